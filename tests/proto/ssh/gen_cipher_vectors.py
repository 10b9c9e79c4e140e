#!/usr/bin/env python3
"""Generates the known-answer vectors of tests/proto/ssh/cipher_test.cc.

Independent of ferry's code: AES-GCM, AES-CTR, HMAC and Poly1305 come from Python's
`cryptography` package (OpenSSL underneath); ChaCha20 is the *original* DJB variant (64-bit
counter, 64-bit nonce, as OpenSSH uses it) written below from the specification and checked
against the RFC 8439 §2.3.2 block test vector, so the IETF-nonce mapping in our C++ code is
checked rather than assumed. Run: python3 tests/proto/ssh/gen_cipher_vectors.py
"""
import hashlib
import hmac
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.poly1305 import Poly1305


def rotl(v, c):
    return ((v << c) & 0xFFFFFFFF) | (v >> (32 - c))


def quarter(s, a, b, c, d):
    s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = rotl(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = rotl(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = rotl(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = rotl(s[b] ^ s[c], 7)


def block(key, words12_15):
    """One ChaCha20 block; words12_15 are state words 12..15 (counter/nonce layout is the caller's)."""
    const = [0x61707865, 0x3320646e, 0x79622d32, 0x6b206574]
    st = const + list(struct.unpack("<8I", key)) + list(words12_15)
    w = st[:]
    for _ in range(10):
        quarter(w, 0, 4, 8, 12); quarter(w, 1, 5, 9, 13); quarter(w, 2, 6, 10, 14); quarter(w, 3, 7, 11, 15)
        quarter(w, 0, 5, 10, 15); quarter(w, 1, 6, 11, 12); quarter(w, 2, 7, 8, 13); quarter(w, 3, 4, 9, 14)
    return struct.pack("<16I", *[(w[i] + st[i]) & 0xFFFFFFFF for i in range(16)])


def chacha_djb(key, nonce8, counter, data):
    """Original ChaCha20: words 12,13 = 64-bit block counter, words 14,15 = 64-bit nonce."""
    out = bytearray()
    n0, n1 = struct.unpack("<2I", nonce8)
    for i in range(0, len(data), 64):
        c = counter + i // 64
        ks = block(key, [c & 0xFFFFFFFF, c >> 32, n0, n1])
        out += bytes(x ^ y for x, y in zip(data[i:i + 64], ks))
    return bytes(out)


# RFC 8439 §2.3.2 block function test (IETF layout: counter word 12, nonce words 13..15).
k = bytes(range(32))
n = bytes.fromhex("000000090000004a00000000")
exp = bytes.fromhex(
    "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
    "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e")
assert block(k, [1] + list(struct.unpack("<3I", n))) == exp


def packet(payload, blk, len_in_clear):
    """RFC 4253 §6 packet (length..padding) with deterministic padding bytes."""
    base = 1 + len(payload) + (0 if len_in_clear else 4)
    pad = blk - base % blk
    if pad < 4:
        pad += blk
    padding = bytes((0xA0 + i) & 0xFF for i in range(pad))
    body = bytes([pad]) + payload + padding
    return struct.pack(">I", len(body)) + body


def hx(b):
    return b.hex()


payloads = [bytes([94]) + struct.pack(">I", 7) + struct.pack(">I", 11) + b"hello world",
            bytes([2]) + struct.pack(">I", 100) + bytes(range(100))]


def emit(name, key, iv, mackey, seq0, pkts, sealed):
    print(f'    {{"{name}",\n     "{hx(key)}",\n     "{hx(iv)}",\n     "{hx(mackey)}",\n     {seq0}u,')
    print(f'     {{"{hx(pkts[0])}",\n      "{hx(pkts[1])}"}},')
    print(f'     {{"{hx(sealed[0])}",\n      "{hx(sealed[1])}"}}}},')


# chacha20-poly1305@openssh.com
key = bytes((i * 7 + 1) & 0xFF for i in range(64))
k2, k1 = key[:32], key[32:]
seq0 = 0xFFFFFFFE  # crosses the 32-bit sequence number wrap
pkts = [packet(p, 8, True) for p in payloads]
sealed = []
for i, p in enumerate(pkts):
    seq = (seq0 + i) & 0xFFFFFFFF
    nonce = struct.pack(">Q", seq)
    enc_len = chacha_djb(k1, nonce, 0, p[:4])
    polykey = chacha_djb(k2, nonce, 0, bytes(32))
    enc_body = chacha_djb(k2, nonce, 1, p[4:])
    mac = Poly1305(polykey)
    mac.update(enc_len + enc_body)
    sealed.append(enc_len + enc_body + mac.finalize())
emit("chacha20-poly1305@openssh.com", key, b"", b"", seq0, pkts, sealed)

# aes-gcm: two packets, the second uses the incremented invocation counter
for bits in (128, 256):
    key = bytes((i * 13 + 5) & 0xFF for i in range(bits // 8))
    iv = bytes.fromhex("0a0b0c0d") + struct.pack(">Q", 0xFFFFFFFFFFFFFFFF)  # counter wraps too
    pkts = [packet(p, 16, True) for p in payloads]
    sealed = []
    for i, p in enumerate(pkts):
        ctr = (0xFFFFFFFFFFFFFFFF + i) & 0xFFFFFFFFFFFFFFFF
        nonce = iv[:4] + struct.pack(">Q", ctr)
        ct = AESGCM(key).encrypt(nonce, p[4:], p[:4])
        sealed.append(p[:4] + ct)
    emit(f"aes{bits}-gcm@openssh.com", key, iv, b"", 3, pkts, sealed)

# aes-ctr with hmac (encrypt-and-MAC and encrypt-then-MAC); the CTR stream continues across
# packets and the counter starts near a 64-bit carry to check 128-bit increment.
for bits, mac, etm in ((128, "sha256", False), (256, "sha512", False), (256, "sha256", True),
                       (128, "sha512", True)):
    key = bytes((i * 3 + 9) & 0xFF for i in range(bits // 8))
    iv = bytes.fromhex("00112233445566778899aabbccddeeff")[:8] + b"\xff" * 8
    mackey = bytes((i * 5 + 2) & 0xFF for i in range(32 if mac == "sha256" else 64))
    pkts = [packet(p, 16, etm) for p in payloads]
    enc = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    sealed = []
    for i, p in enumerate(pkts):
        seq = 41 + i
        if etm:
            c = p[:4] + enc.update(p[4:])
            t = hmac.new(mackey, struct.pack(">I", seq) + c, getattr(hashlib, mac)).digest()
        else:
            t = hmac.new(mackey, struct.pack(">I", seq) + p, getattr(hashlib, mac)).digest()
            c = enc.update(p)
        sealed.append(c + t)
    name = f"aes{bits}-ctr hmac-sha2-{mac[3:]}{'-etm@openssh.com' if etm else ''}"
    emit(name, key, iv, mackey, 41, pkts, sealed)
