#pragma once
// The HTTP/1.1 codec (RFC 9110 / RFC 9112), sans-IO. See README.md in this folder.
//   types.hh   limits, header, framing, progress, helpers (has_token, status_for, ...)
//   parser.hh  request_parser / response_parser: incremental zero-copy head parsing
//   body.hh    length_body, chunked_decoder, body_reader: body framing, decode and pass-through
//   writer.hh  write_request_head / write_response_head / write_head, is_hop_by_hop, rewrite
#include "proto/http1/body.hh"
#include "proto/http1/parser.hh"
#include "proto/http1/types.hh"
#include "proto/http1/writer.hh"
