#!/usr/bin/python3
"""Known-answer vectors for src/proto/jwt, made with an independent implementation: Debian's
PyJWT 2.6 (python3-jwt) on python3-cryptography (OpenSSL).

Writes tests/proto/jwt/jwt_vectors.hh (included by the unit tests, the fuzz target and the micro
benchmarks) and seeds fuzz/corpus/jwt/. Run from the repository root, with Debian's Python (the
packages are Debian's, not pip's):

    /usr/bin/python3 tests/proto/jwt/gen_vectors.py

Keys are deterministic: RSA primes come from a seeded PRNG (Miller-Rabin here, the key objects
are built by `cryptography`), P-256 keys from fixed scalars, Ed25519 keys from fixed seeds.
ECDSA signatures are randomised by OpenSSL, so ES256 tokens differ between runs; everything else
is reproducible. The committed header is one run's output.

Every token vector carries ferry's expected verdict (`expect`, written here by hand from the
rules in src/proto/jwt/token.hh) and PyJWT's own verdict (`pyjwt`: "ok" or its exception class)
obtained by calling jwt.decode() with the same key, time, leeway, issuer, audiences and
allow-list. The script fails unless the two agree (see COMPAT) or the vector states why ferry is
deliberately stricter (`why`).
"""
import base64
import hashlib
import hmac
import json
import math
import os
import random
import sys
from datetime import datetime, timezone

import jwt
import jwt.api_jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives import hashes
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
OUT = os.path.join(ROOT, "tests/proto/jwt/jwt_vectors.hh")
CORPUS = os.path.join(ROOT, "fuzz/corpus/jwt")

NOW = 1700000000
SECRET = b"ferry-test-hs256-secret-0123456789abcdef"  # 40 bytes
OTHER_SECRET = b"another-hs256-secret-that-is-not-ours-!!"
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ED25519_L = 2**252 + 27742317777372353535851937790883648493


# ---- deterministic keys ---------------------------------------------------------------------

SMALL_PRIMES = [p for p in range(3, 2000) if all(p % d for d in range(2, int(p**0.5) + 1))]


def probable_prime(n, rng):
    if n < 2:
        return False
    for p in SMALL_PRIMES:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for _ in range(24):
        a = rng.randrange(2, n - 2)
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def gen_prime(rng, bits):
    while True:
        c = rng.getrandbits(bits) | (3 << (bits - 2)) | 1
        if probable_prime(c, rng):
            return c


def rsa_key(seed, bits):
    rng = random.Random(seed)
    e = 65537
    while True:
        p, q = gen_prime(rng, bits // 2), gen_prime(rng, bits // 2)
        phi = (p - 1) * (q - 1)
        if p == q or math.gcd(e, phi) != 1 or (p * q).bit_length() != bits:
            continue
        d = pow(e, -1, phi)
        nums = rsa.RSAPrivateNumbers(p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q),
                                     rsa.rsa_crt_iqmp(p, q), rsa.RSAPublicNumbers(e, p * q))
        return nums.private_key()


def ec_key(scalar):
    return ec.derive_private_key(scalar, ec.SECP256R1())


def ed_key(seed_byte):
    return ed25519.Ed25519PrivateKey.from_private_bytes(bytes([seed_byte]) * 32)


print("generating keys ...", file=sys.stderr)
RSA1 = rsa_key("ferry-rsa-1", 2048)
RSA2 = rsa_key("ferry-rsa-2", 2048)
RSA4K = rsa_key("ferry-rsa-4096", 4096)
RSA_OTHER = rsa_key("attacker-rsa", 2048)
RSA_SMALL = rsa_key("ferry-rsa-1024", 1024)
EC1 = ec_key(0x1F2E3D4C5B6A79880123456789ABCDEF0FEDCBA987654321A1B2C3D4E5F60718)
EC_OTHER = ec_key(0x2222222222222222222222222222222222222222222222222222222222222222)
ED1 = ed_key(0x11)
ED_OTHER = ed_key(0x99)


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64u_int(i, size=None):
    size = size or (i.bit_length() + 7) // 8
    return b64u(i.to_bytes(size, "big"))


def jwk(pub, kid, **extra):
    if isinstance(pub, rsa.RSAPublicKey):
        d = json.loads(RSAAlgorithm.to_jwk(pub))
    elif isinstance(pub, ec.EllipticCurvePublicKey):
        d = json.loads(ECAlgorithm.to_jwk(pub))
    else:
        d = json.loads(OKPAlgorithm.to_jwk(pub))
    if kid is not None:
        d["kid"] = kid
    d.update(extra)
    return d


MAIN_JWKS = {"keys": [
    jwk(RSA1.public_key(), "rsa-1", use="sig", alg="RS256"),
    jwk(RSA2.public_key(), "rsa-2"),
    jwk(RSA4K.public_key(), "rsa-4096", alg="RS256"),
    jwk(EC1.public_key(), "ec-1", use="sig", alg="ES256"),
    jwk(ED1.public_key(), "ed-1", alg="EdDSA"),
]}
MAIN_JWKS_TEXT = json.dumps(MAIN_JWKS, indent=1)

# Key sets as the oracle sees them: (kid, alg, key object for PyJWT).
JWKS_KEYS = [("rsa-1", "RS256", RSA1.public_key()), ("rsa-2", "RS256", RSA2.public_key()),
             ("rsa-4096", "RS256", RSA4K.public_key()), ("ec-1", "ES256", EC1.public_key()),
             ("ed-1", "EdDSA", ED1.public_key())]
KEYSETS = {"full": JWKS_KEYS + [(None, "HS256", SECRET)], "jwks": JWKS_KEYS}


# ---- token construction ----------------------------------------------------------------------

def enc_json(obj):
    if isinstance(obj, (bytes, str)):
        return obj.encode() if isinstance(obj, str) else obj
    return json.dumps(obj, separators=(",", ":")).encode()


def sign(alg, key, data):
    if alg == "HS256":
        return hmac.new(key, data, hashlib.sha256).digest()
    if alg == "RS256":
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if alg == "ES256":
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if alg == "EdDSA":
        return key.sign(data)
    raise ValueError(alg)


def craft(header, payload, alg=None, key=None, sig=None, h64=None, p64=None):
    """A compact JWS from a header/payload (dict or raw JSON text), signed with `alg`/`key`
    unless `sig` (bytes or already-encoded str) is given."""
    h64 = h64 if h64 is not None else b64u(enc_json(header))
    p64 = p64 if p64 is not None else b64u(enc_json(payload))
    si = f"{h64}.{p64}"
    if sig is None:
        sig = sign(alg, key, si.encode())
    return si + "." + (sig if isinstance(sig, str) else b64u(sig))


def base(**over):
    c = {"sub": "alice", "iat": NOW - 10, "exp": NOW + 3600, "ferry_tunnels": ["llm", "dev"]}
    for k, v in over.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def pyjwt_encode(claims, key, alg, kid=None):
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid} if kid else None)


def parts(tok):
    return tok.split(".")


def resign_hs(h64, p64, key=SECRET):
    return craft(None, None, "HS256", key, h64=h64, p64=p64)


# ---- the PyJWT oracle ------------------------------------------------------------------------

class FixedClock:
    now_value = NOW

    @classmethod
    def now(cls, tz=None):
        return datetime.fromtimestamp(cls.now_value, tz=timezone.utc)


jwt.api_jwt.datetime = FixedClock  # PyJWT reads datetime.now() in _validate_claims


def pyjwt_verdict(tok, v):
    FixedClock.now_value = v["now"]
    allowed = v["allowed"] or ["HS256", "RS256", "ES256", "EdDSA"]
    kw = dict(algorithms=allowed, audience=v["aud"] or None, issuer=v["iss"] or None, leeway=v["leeway"],
              options={"require": ["exp"] if v["require_exp"] else []})
    try:
        hdr = jwt.get_unverified_header(tok)
    except Exception as e:  # noqa: BLE001 - the class name is the verdict
        return type(e).__name__
    alg, kid = hdr.get("alg"), hdr.get("kid")
    keys = KEYSETS[v["keyset"]]
    if kid is not None and any(k[0] == kid for k in keys):
        cands = [k for k in keys if k[0] == kid]
    else:
        cands = [k for k in keys if k[1] == alg and (kid is None or k[0] is None)]
    if not cands:
        try:
            jwt.decode(tok, key=os.urandom(32), **kw)
        except (jwt.InvalidAlgorithmError, jwt.DecodeError) as e:
            if not isinstance(e, jwt.InvalidSignatureError):
                return type(e).__name__
        except Exception:  # noqa: BLE001
            pass
        return "NoKey"
    last = None
    for _, _, key in cands:
        try:
            jwt.decode(tok, key=key, **kw)
            return "ok"
        except jwt.InvalidSignatureError:
            last = "InvalidSignatureError"
        except Exception as e:  # noqa: BLE001
            return type(e).__name__
    return last


# PyJWT verdict -> ferry codes that mean the same thing.
COMPAT = {
    "ok": {"ok"},
    "ExpiredSignatureError": {"token_expired"},
    "ImmatureSignatureError": {"token_not_yet_valid"},
    "InvalidAudienceError": {"token_bad_audience", "token_malformed"},
    "MissingRequiredClaimError": {"token_bad_audience", "token_bad_issuer", "token_invalid"},
    "InvalidIssuerError": {"token_bad_issuer"},
    "InvalidSignatureError": {"token_bad_signature"},
    "InvalidAlgorithmError": {"token_alg_not_allowed"},
    "DecodeError": {"token_malformed", "token_too_large", "token_alg_not_allowed", "token_bad_signature"},
    "NoKey": {"token_unknown_key"},
    "TypeError": {"token_key_mismatch"},
    "InvalidKeyError": {"token_key_mismatch"},
    "InvalidIssuedAtError": {"token_malformed"},
}

VECTORS = []
PROBLEMS = []


def vec(name, token, expect, keyset="full", iss="", aud=(), leeway=60, now=NOW, allowed=(),
        require_exp=True, sub="", tunnels=(), exp=None, why=""):
    v = dict(name=name, token=token, expect=expect, keyset=keyset, iss=iss, aud=list(aud), leeway=leeway,
             now=now, allowed=list(allowed), require_exp=require_exp, sub=sub, tunnels=list(tunnels),
             exp=-1 if exp is None else exp, why=why)
    v["pyjwt"] = pyjwt_verdict(token, v)
    agree = expect in COMPAT.get(v["pyjwt"], set())
    if agree and why:
        PROBLEMS.append(f"{name}: PyJWT agrees ({v['pyjwt']}) but a deliberate difference is claimed")
    if not agree and not why:
        PROBLEMS.append(f"{name}: ferry expects {expect} but PyJWT says {v['pyjwt']} (add `why` if deliberate)")
    VECTORS.append(v)


def ok(name, token, sub="alice", tunnels=("llm", "dev"), exp=NOW + 3600, **kw):
    vec(name, token, "ok", sub=sub, tunnels=tunnels, exp=exp, **kw)


# ---- valid tokens ----------------------------------------------------------------------------

HS_OK = pyjwt_encode(base(), SECRET, "HS256")
RS_OK = pyjwt_encode(base(), RSA1, "RS256", "rsa-1")
ES_OK = pyjwt_encode(base(), EC1, "ES256", "ec-1")
ED_OK = pyjwt_encode(base(), ED1, "EdDSA", "ed-1")
ok("hs256_ok", HS_OK)
ok("hs256_unnamed_key_any_kid_ok", pyjwt_encode(base(), SECRET, "HS256", "not-a-known-kid"))
ok("rs256_ok", RS_OK)
ok("rs256_key2_ok", pyjwt_encode(base(), RSA2, "RS256", "rsa-2"))
ok("rs256_nokid_key2_ok", pyjwt_encode(base(), RSA2, "RS256"))
ok("rs256_4096_ok", pyjwt_encode(base(), RSA4K, "RS256", "rsa-4096"))
ok("es256_ok", ES_OK)
ok("es256_nokid_ok", pyjwt_encode(base(), EC1, "ES256"))
ok("eddsa_ok", ED_OK)
ok("eddsa_nokid_ok", pyjwt_encode(base(), ED1, "EdDSA"))
h, p, s = parts(ES_OK)
sb = base64.urlsafe_b64decode(s + "==")
high_s = sb[:32] + (P256_ORDER - int.from_bytes(sb[32:], "big")).to_bytes(32, "big")
ok("es256_high_s_ok", f"{h}.{p}.{b64u(high_s)}")
ok("fractional_exp_ok", pyjwt_encode(base(exp=NOW + 100.75), SECRET, "HS256"), exp=NOW + 100)
ok("iss_aud_ok", pyjwt_encode(base(iss="https://issuer.example", aud="ferry-relay"), SECRET, "HS256"),
   iss="https://issuer.example", aud=["ferry-relay"])
ok("aud_array_ok", pyjwt_encode(base(aud=["other", "ferry-relay"]), SECRET, "HS256"), aud=["ferry-relay", "x"])
ok("no_exp_optional_ok", pyjwt_encode(base(exp=None), SECRET, "HS256"), exp=None, require_exp=False)
ok("exp_leeway_edge_ok", pyjwt_encode(base(exp=NOW - 59), SECRET, "HS256"), exp=NOW - 59)
ok("nbf_leeway_edge_ok", pyjwt_encode(base(nbf=NOW + 60), SECRET, "HS256"))
ok("iat_leeway_edge_ok", pyjwt_encode(base(iat=NOW + 60), SECRET, "HS256"))
ok("leeway0_ok", pyjwt_encode(base(exp=NOW + 1), SECRET, "HS256"), exp=NOW + 1, leeway=0)
ok("unicode_sub_ok", pyjwt_encode(base(sub="zo\u00eb\u2603\U0001F680"), SECRET, "HS256"),
   sub="zo\u00eb\u2603\U0001F680")
ok("unknown_claims_ok", pyjwt_encode(base(ctx={"a": [1, 2, {"b": None}]}, flag=True, n=-1.5e3, s="x\"\\/\n"),
                                     SECRET, "HS256"))
ok("no_tunnels_ok", pyjwt_encode(base(ferry_tunnels=None), SECRET, "HS256"), tunnels=())
ok("whitespace_json_ok", craft('{ "alg" : "HS256",\n\t"typ":"JWT" }',
                              '{\r\n "sub" : "alice" , "exp" : %d , "ferry_tunnels" : [ "llm" , "dev" ] }' % (NOW + 3600),
                              "HS256", SECRET))

# ---- wrong keys ------------------------------------------------------------------------------
vec("hs256_wrong_secret", pyjwt_encode(base(), OTHER_SECRET, "HS256"), "token_bad_signature")
vec("rs256_wrong_key", pyjwt_encode(base(), RSA_OTHER, "RS256", "rsa-1"), "token_bad_signature")
vec("rs256_kid_names_other_key", pyjwt_encode(base(), RSA2, "RS256", "rsa-1"), "token_bad_signature")
vec("rs256_nokid_unknown_signer", pyjwt_encode(base(), RSA_OTHER, "RS256"), "token_bad_signature")
vec("rs256_unknown_kid", pyjwt_encode(base(), RSA1, "RS256", "rsa-9"), "token_unknown_key")
vec("es256_wrong_key", pyjwt_encode(base(), EC_OTHER, "ES256", "ec-1"), "token_bad_signature")
vec("eddsa_wrong_key", pyjwt_encode(base(), ED_OTHER, "EdDSA", "ed-1"), "token_bad_signature")
vec("hs256_jwks_only_no_key", HS_OK, "token_unknown_key", keyset="jwks")

# ---- algorithm confusion ---------------------------------------------------------------------
RSA1_PEM = RSA1.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
RSA1_DER = RSA1.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
EC1_PEM = EC1.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
ED1_RAW = ED1.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
vec("confusion_hs256_rsa_pem_kid", craft({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, base(), "HS256", RSA1_PEM),
    "token_key_mismatch")
vec("confusion_hs256_rsa_pem_nokid", craft({"alg": "HS256", "typ": "JWT"}, base(), "HS256", RSA1_PEM),
    "token_bad_signature")
vec("confusion_hs256_rsa_pem_nokid_jwks", craft({"alg": "HS256", "typ": "JWT"}, base(), "HS256", RSA1_PEM),
    "token_unknown_key", keyset="jwks")
vec("confusion_hs256_rsa_der_nokid_jwks", craft({"alg": "HS256"}, base(), "HS256", RSA1_DER),
    "token_unknown_key", keyset="jwks")
vec("confusion_hs256_ec_pem_kid", craft({"alg": "HS256", "kid": "ec-1"}, base(), "HS256", EC1_PEM),
    "token_key_mismatch")
vec("confusion_hs256_ed_raw_kid", craft({"alg": "HS256", "kid": "ed-1"}, base(), "HS256", ED1_RAW),
    "token_key_mismatch")
h, p, s = parts(RS_OK)
vec("alg_changed_rs256_to_hs256", f"{b64u(enc_json({'alg': 'HS256', 'typ': 'JWT', 'kid': 'rsa-1'}))}.{p}.{s}",
    "token_key_mismatch")
vec("alg_changed_rs256_to_es256", f"{b64u(enc_json({'alg': 'ES256', 'typ': 'JWT', 'kid': 'rsa-1'}))}.{p}.{s}",
    "token_key_mismatch")
h, p, s = parts(HS_OK)
vec("alg_changed_hs256_to_rs256_nokid", f"{b64u(enc_json({'alg': 'RS256', 'typ': 'JWT'}))}.{p}.{s}",
    "token_bad_signature")
vec("alg_changed_hs256_to_eddsa_nokid", f"{b64u(enc_json({'alg': 'EdDSA', 'typ': 'JWT'}))}.{p}.{s}",
    "token_bad_signature")

# ---- alg none and unsupported algorithms -----------------------------------------------------
vec("none_empty_sig", craft({"alg": "none", "typ": "JWT"}, base(), sig=""), "token_alg_not_allowed")
vec("none_with_sig", craft({"alg": "none"}, base(), sig=b"\x01" * 32), "token_alg_not_allowed")
for variant in ("None", "NONE", "nOnE"):
    vec(f"none_case_{variant}", craft({"alg": variant}, base(), sig=""), "token_alg_not_allowed")
vec("alg_rs512", pyjwt_encode(base(), RSA1, "RS512", "rsa-1"), "token_alg_not_allowed")
vec("alg_ps256", pyjwt_encode(base(), RSA1, "PS256", "rsa-1"), "token_alg_not_allowed")
vec("alg_hs512", pyjwt_encode(base(), SECRET, "HS512"), "token_alg_not_allowed")
vec("alg_ed25519_name", craft({"alg": "Ed25519", "kid": "ed-1"}, base(), "EdDSA", ED1), "token_alg_not_allowed")
vec("alg_missing", craft({"typ": "JWT"}, base(), "HS256", SECRET), "token_malformed",
    why="RFC 7515 §4.1.1: alg is required, so its absence is reported as a malformed header")
vec("alg_not_in_allowlist", HS_OK, "token_alg_not_allowed", allowed=["RS256", "ES256", "EdDSA"])
vec("crit_header", craft({"alg": "HS256", "crit": ["exp"], "exp": NOW}, base(), "HS256", SECRET),
    "token_alg_not_allowed", why="RFC 7515 §4.1.11: ferry understands no crit extension; PyJWT ignores crit")
vec("jwe_five_parts", "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a2V5.aXY.Y2lwaGVy.dGFn", "token_malformed",
    why="five parts are a JWE, not a JWS: refused before the header is read")

# ---- time claims -----------------------------------------------------------------------------
vec("expired_by_61", pyjwt_encode(base(exp=NOW - 61), SECRET, "HS256"), "token_expired")
vec("expired_by_60_edge", pyjwt_encode(base(exp=NOW - 60), SECRET, "HS256"), "token_expired")
vec("expired_leeway0", pyjwt_encode(base(exp=NOW), SECRET, "HS256"), "token_expired", leeway=0)
vec("expired_rs256", pyjwt_encode(base(exp=NOW - 3600), RSA1, "RS256", "rsa-1"), "token_expired")
vec("nbf_future_61", pyjwt_encode(base(nbf=NOW + 61), SECRET, "HS256"), "token_not_yet_valid")
vec("iat_future_61", pyjwt_encode(base(iat=NOW + 61), SECRET, "HS256"), "token_not_yet_valid")
vec("exp_missing", pyjwt_encode(base(exp=None), SECRET, "HS256"), "token_invalid")
vec("exp_string", pyjwt_encode(base(exp=str(NOW + 100)), SECRET, "HS256"), "token_malformed",
    why="RFC 7519 §2: a NumericDate is a JSON number; PyJWT converts a string with int()")
vec("exp_negative", pyjwt_encode(base(exp=-5), SECRET, "HS256"), "token_malformed",
    why="ferry refuses NumericDates outside 0..9999-12-31; PyJWT reads -5 as long expired")
vec("expired_and_bad_aud", pyjwt_encode(base(exp=NOW - 3600, aud="elsewhere"), SECRET, "HS256"),
    "token_bad_audience", aud=["ferry-relay"],
    why="ferry checks iss/aud before time so a refresh is only suggested when it can help; PyJWT checks exp first")

# ---- sub, iss, aud, ferry_tunnels ------------------------------------------------------------
vec("sub_missing", pyjwt_encode(base(sub=None), SECRET, "HS256"), "token_invalid",
    why="ferry requires sub (the tunnel owner); PyJWT does not")
vec("sub_empty", pyjwt_encode(base(sub=""), SECRET, "HS256"), "token_invalid",
    why="ferry requires a non-empty sub")
vec("sub_number", pyjwt_encode(base(sub=42), SECRET, "HS256"), "token_malformed",
    why="RFC 7519 §4.1.2: sub is a string; PyJWT 2.6 does not check its type")
vec("aud_mismatch", pyjwt_encode(base(aud="elsewhere"), SECRET, "HS256"), "token_bad_audience", aud=["ferry-relay"])
vec("aud_missing", HS_OK, "token_bad_audience", aud=["ferry-relay"])
vec("aud_unexpected", pyjwt_encode(base(aud="ferry-relay"), SECRET, "HS256"), "token_bad_audience")
vec("aud_number", pyjwt_encode(base(aud=7), SECRET, "HS256"), "token_malformed", aud=["ferry-relay"])
vec("aud_empty_array", pyjwt_encode(base(aud=[]), SECRET, "HS256"), "token_bad_audience", aud=["ferry-relay"])
vec("iss_mismatch", pyjwt_encode(base(iss="https://evil.example"), SECRET, "HS256"), "token_bad_issuer",
    iss="https://issuer.example")
vec("iss_missing", HS_OK, "token_bad_issuer", iss="https://issuer.example")
vec("tunnels_not_array", pyjwt_encode(base(ferry_tunnels="llm"), SECRET, "HS256"), "token_malformed",
    why="ferry_tunnels is ferry's claim: an array of strings")
vec("tunnels_non_string", pyjwt_encode(base(ferry_tunnels=["llm", 1]), SECRET, "HS256"), "token_malformed",
    why="ferry_tunnels is ferry's claim: an array of strings")
vec("tunnels_too_many", pyjwt_encode(base(ferry_tunnels=[f"t{i}" for i in range(65)]), SECRET, "HS256"),
    "token_too_large", why="ferry bounds ferry_tunnels (64 entries by default)")

# ---- strict JSON -----------------------------------------------------------------------------
dup_payload = '{"sub":"alice","exp":%d,"sub":"admin"}' % (NOW + 3600)
vec("dup_claim_sub", craft({"alg": "HS256"}, dup_payload, "HS256", SECRET), "token_malformed",
    why="duplicate member names are rejected (RFC 7519 §4); Python's json keeps the last one")
vec("dup_header_alg", craft('{"alg":"none","alg":"HS256"}', base(), "HS256", SECRET), "token_malformed",
    why="duplicate member names are rejected (RFC 7515 §4); Python's json keeps the last one")
vec("header_not_json", craft("{alg", base(), "HS256", SECRET), "token_malformed")
vec("header_array", craft('["HS256"]', base(), "HS256", SECRET), "token_malformed")
vec("payload_not_json", craft({"alg": "HS256"}, "not json", "HS256", SECRET), "token_malformed")
vec("payload_array", craft({"alg": "HS256"}, "[1,2]", "HS256", SECRET), "token_malformed")
vec("payload_trailing_bytes", craft({"alg": "HS256"}, '{"sub":"alice","exp":%d} x' % (NOW + 3600), "HS256", SECRET),
    "token_malformed")
vec("payload_invalid_utf8", craft({"alg": "HS256"}, b'{"sub":"al\xffce","exp":%d}' % (NOW + 3600), "HS256", SECRET),
    "token_malformed")
vec("payload_lone_surrogate", craft({"alg": "HS256"}, '{"sub":"a\\ud800b","exp":%d}' % (NOW + 3600), "HS256", SECRET),
    "token_malformed", why="lone surrogates are not Unicode text; Python's json accepts them")
vec("payload_nul_escape", craft({"alg": "HS256"}, '{"sub":"ali\\u0000ce","exp":%d}' % (NOW + 3600), "HS256", SECRET),
    "token_malformed", why="ferry refuses NUL in JSON strings (claims end up in C strings and logs)")
vec("payload_deep_nesting", pyjwt_encode(base(a={"b": {"c": {"d": {"e": 1}}}}), SECRET, "HS256"), "token_too_large",
    why="ferry bounds JSON nesting (depth 4 by default)")
vec("payload_depth_4_ok", pyjwt_encode(base(a={"b": {"c": {"d": 1}}}), SECRET, "HS256"), "ok", sub="alice",
    tunnels=["llm", "dev"], exp=NOW + 3600)
vec("token_too_long", pyjwt_encode(base(pad="x" * 6200), SECRET, "HS256"), "token_too_large",
    why="ferry bounds the token (8192 bytes by default)")
vec("header_too_long", craft({"alg": "HS256", "x": "y" * 1100}, base(), "HS256", SECRET), "token_too_large",
    why="ferry bounds the header (1024 bytes by default)")

# ---- strict base64url ------------------------------------------------------------------------
h, p, s = parts(HS_OK)
hdr_pad = b64u(enc_json({"alg": "HS256", "typ": "JWTx"}))  # 31 bytes -> 42 chars, needs "=="
assert len(hdr_pad) % 4 == 2
vec("header_padding", resign_hs(hdr_pad + "==", p), "token_malformed",
    why="base64url in JWS has no padding (RFC 7515 §2); PyJWT's decoder accepts it")
tilde = b64u(enc_json(base(x="~~~>>>???")))
assert "-" in tilde or "_" in tilde
vec("payload_std_base64_chars", resign_hs(h, tilde.replace("-", "+").replace("_", "/")), "token_malformed",
    why="'+' and '/' are not base64url; PyJWT's decoder accepts them")
tail = hdr_pad
alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
noncanon = tail[:-1] + alphabet[alphabet.index(tail[-1]) + 1]
assert base64.urlsafe_b64decode(noncanon + "==") == base64.urlsafe_b64decode(tail + "==")
vec("header_noncanonical_tail", resign_hs(noncanon, p), "token_malformed",
    why="non-canonical base64url (RFC 4648 §3.5) would give two texts one meaning; PyJWT accepts it")
vec("payload_space", resign_hs(h, p[:10] + " " + p[10:]), "token_malformed")
vec("header_len_1_mod_4", resign_hs(h + "A", p), "token_malformed")
vec("two_parts", f"{h}.{p}", "token_malformed")
vec("empty_token", "", "token_malformed")
vec("only_dots", "..", "token_malformed")
vec("empty_payload", resign_hs(h, ""), "token_malformed")

# ---- signature encodings ---------------------------------------------------------------------
h, p, s = parts(RS_OK)
vec("rs256_sig_truncated", f"{h}.{p}.{b64u(base64.urlsafe_b64decode(s + '==')[:-3])}", "token_bad_signature")
vec("hs256_sig_empty", f"{parts(HS_OK)[0]}.{parts(HS_OK)[1]}.", "token_bad_signature")
hs_sig = bytearray(base64.urlsafe_b64decode(parts(HS_OK)[2] + "="))
hs_sig[5] ^= 0x20
vec("hs256_sig_bit_flipped", f"{parts(HS_OK)[0]}.{parts(HS_OK)[1]}.{b64u(bytes(hs_sig))}", "token_bad_signature")
tampered = b64u(enc_json(base(sub="mallory")))
vec("rs256_payload_tampered", f"{h}.{tampered}.{s}", "token_bad_signature")
# s + n: the same residue mod n, so a lax verifier accepts it; find a signature where s + n still
# fits in the modulus length.
n1 = RSA1.public_key().public_numbers().n
for i in range(200):
    t = pyjwt_encode(base(jti=str(i)), RSA1, "RS256", "rsa-1")
    th, tp, ts = parts(t)
    sv = int.from_bytes(base64.urlsafe_b64decode(ts + "=="), "big")
    if (sv + n1).bit_length() <= 2048:
        vec("rs256_sig_plus_modulus", f"{th}.{tp}.{b64u((sv + n1).to_bytes(256, 'big'))}", "token_bad_signature")
        break
else:
    sys.exit("no signature with s + n < 2^2048 found")
h, p, s = parts(ES_OK)
sb = base64.urlsafe_b64decode(s + "==")
der = encode_dss_signature(int.from_bytes(sb[:32], "big"), int.from_bytes(sb[32:], "big"))
vec("es256_der_signature", f"{h}.{p}.{b64u(der)}", "token_bad_signature")
vec("es256_r_zero", f"{h}.{p}.{b64u(bytes(32) + sb[32:])}", "token_bad_signature")
vec("es256_s_is_order", f"{h}.{p}.{b64u(sb[:32] + P256_ORDER.to_bytes(32, 'big'))}", "token_bad_signature")
h, p, s = parts(ED_OK)
eb = base64.urlsafe_b64decode(s + "==")
s_plus_l = (int.from_bytes(eb[32:], "little") + ED25519_L).to_bytes(32, "little")
vec("eddsa_s_plus_l", f"{h}.{p}.{b64u(eb[:32] + s_plus_l)}", "token_bad_signature")


if PROBLEMS:
    sys.exit("\n".join(PROBLEMS))


# ---- JWK sets --------------------------------------------------------------------------------
def jwks_doc(*keys):
    return json.dumps({"keys": list(keys)})


JWKS_VECTORS = []
PROBLEMS = []


def jv(name, text, expect, keys=0, skipped=0):
    JWKS_VECTORS.append(dict(name=name, json=text, expect=expect, keys=keys, skipped=skipped))


r1 = jwk(RSA1.public_key(), "rsa-1")
e1 = jwk(EC1.public_key(), "ec-1")
o1 = jwk(ED1.public_key(), "ed-1")
jv("jwks_main", MAIN_JWKS_TEXT, "ok", keys=5)
p384 = jwk(ec.derive_private_key(12345, ec.SECP384R1()).public_key(), "p384")
jv("jwks_skips_unusable", jwks_doc(
    r1,
    dict(jwk(RSA2.public_key(), "enc-1"), use="enc"),
    p384,
    {"kty": "OKP", "crv": "Ed448", "kid": "ed448", "x": b64u(bytes(57))},
    {"kty": "OKP", "crv": "X25519", "kid": "x25519", "x": b64u(bytes(32))},
    {"kty": "oct", "kid": "kw", "alg": "A256KW", "k": b64u(bytes(32))},
    dict(jwk(RSA2.public_key(), "rs384"), alg="RS384"),
    dict(jwk(RSA2.public_key(), "ops"), key_ops=["encrypt"]),
    {"kty": "foo", "kid": "foo"},
), "ok", keys=1, skipped=8)
jv("jwks_oct_hs256", jwks_doc({"kty": "oct", "kid": "hs-1", "alg": "HS256", "k": b64u(SECRET)}), "ok", keys=1)
jv("jwks_oct_no_alg_skipped", jwks_doc({"kty": "oct", "kid": "hs-1", "k": b64u(SECRET)}), "ok", keys=0, skipped=1)
jv("jwks_oct_short", jwks_doc({"kty": "oct", "kid": "hs-1", "alg": "HS256", "k": b64u(b"x" * 16)}), "jwks_invalid")
jv("jwks_rsa_1024", jwks_doc(jwk(RSA_SMALL.public_key(), "small")), "jwks_invalid")
priv = json.loads(RSAAlgorithm.to_jwk(RSA1))
priv["kid"] = "priv"
jv("jwks_rsa_private_members", jwks_doc(priv), "jwks_invalid")
bad_ec = dict(e1)
yv = int.from_bytes(base64.urlsafe_b64decode(bad_ec["y"] + "=="), "big")
bad_ec["y"] = b64u_int(yv ^ 1, 32)
jv("jwks_ec_off_curve", jwks_doc(bad_ec), "jwks_invalid")
jv("jwks_ec_short_x", jwks_doc(dict(e1, x=b64u(base64.urlsafe_b64decode(e1["x"] + "==")[1:]))), "jwks_invalid")
jv("jwks_ec_no_crv", jwks_doc({k: v for k, v in e1.items() if k != "crv"}), "jwks_invalid")
jv("jwks_okp_short", jwks_doc(dict(o1, x=b64u(bytes(31)))), "jwks_invalid")
jv("jwks_dup_kid", jwks_doc(r1, dict(jwk(RSA2.public_key(), "rsa-1"))), "jwks_invalid")
jv("jwks_rsa_missing_n", jwks_doc({k: v for k, v in r1.items() if k != "n"}), "jwks_invalid")
jv("jwks_rsa_padded_n", jwks_doc(dict(r1, n=r1["n"] + "==")), "jwks_invalid")
jv("jwks_rsa_e_1", jwks_doc(dict(r1, e="AQ")), "jwks_invalid")
jv("jwks_rsa_leading_zero_n", jwks_doc(dict(r1, n=b64u(b"\x00" + base64.urlsafe_b64decode(r1["n"] + "==")))), "ok",
   keys=1)
jv("jwks_rsa_alg_mismatch_skipped", jwks_doc(dict(r1, alg="ES256")), "ok", keys=0, skipped=1)
jv("jwks_kty_missing", jwks_doc({"kid": "x", "n": r1["n"], "e": r1["e"]}), "jwks_invalid")
jv("jwks_no_keys", "{}", "jwks_invalid")
jv("jwks_keys_not_array", '{"keys":{}}', "jwks_invalid")
jv("jwks_key_not_object", '{"keys":[1]}', "jwks_invalid")
jv("jwks_not_json", '{"keys":[', "jwks_invalid")
jv("jwks_empty_keys", '{"keys":[]}', "ok", keys=0)


# ---- output ----------------------------------------------------------------------------------
def cstr(s):
    if isinstance(s, str):
        s = s.encode()
    out = []
    for b in s:
        c = chr(b)
        if c in '"\\':
            out.append("\\" + c)
        elif 0x20 <= b < 0x7F and c != "?":  # '?' escaped to dodge trigraphs
            out.append(c)
        else:
            out.append("\\%03o" % b)
    return '"' + "".join(out) + '"'


def list_lit(items):
    assert all("|" not in i for i in items)
    return cstr("|".join(items)) + "sv"


with open(OUT, "w") as f:
    w = f.write
    w("// GENERATED by tests/proto/jwt/gen_vectors.py with PyJWT %s / cryptography (Debian 12). Do not edit:\n"
      % jwt.__version__)
    w("// run `/usr/bin/python3 tests/proto/jwt/gen_vectors.py` from the repository root instead.\n")
    w("#pragma once\n#include <cstdint>\n#include <string_view>\n\n")
    w("namespace jwt_vectors {\nusing namespace std::string_view_literals;\n\n")
    w("inline constexpr std::int64_t kNow = %d;\n" % NOW)
    w("inline constexpr std::string_view kHs256Secret = %ssv;\n" % cstr(SECRET))
    w("inline constexpr std::string_view kOtherSecret = %ssv;\n" % cstr(OTHER_SECRET))
    w("// JWK set of the token vectors (keyset \"jwks\"); keyset \"full\" adds kHs256Secret without a kid.\n")
    w("inline constexpr std::string_view kJwks = %ssv;\n" % cstr(MAIN_JWKS_TEXT))
    w("// The RSA key rsa-1 as PEM: the bytes an algorithm-confusion attacker uses as an HMAC secret.\n")
    w("inline constexpr std::string_view kRsa1Pem = %ssv;\n\n" % cstr(RSA1_PEM))
    w("struct token_vector {\n"
      "    std::string_view name, token, expect, pyjwt, why, keyset, iss;\n"
      "    std::string_view aud, allowed;  // '|'-separated lists; empty allowed = all\n"
      "    std::int64_t leeway, now;\n    bool require_exp;\n"
      "    std::string_view sub;\n    std::string_view tunnels;  // '|'-separated\n"
      "    std::int64_t exp;  // -1: none\n};\n\n")
    w("inline const token_vector kTokens[] = {\n")
    for v in VECTORS:
        w("    {%ssv, %ssv, %ssv, %ssv, %ssv, %ssv, %ssv, %s, %s, %d, %d, %s, %ssv, %s, %d},\n" % (
            cstr(v["name"]), cstr(v["token"]), cstr(v["expect"]), cstr(v["pyjwt"]), cstr(v["why"]),
            cstr(v["keyset"]), cstr(v["iss"]), list_lit(v["aud"]), list_lit(v["allowed"]), v["leeway"], v["now"],
            "true" if v["require_exp"] else "false", cstr(v["sub"]), list_lit(v["tunnels"]), v["exp"]))
    w("};\n\n")
    w("struct jwks_vector {\n    std::string_view name, json, expect;\n    int keys, skipped;\n};\n\n")
    w("inline const jwks_vector kJwksVectors[] = {\n")
    for v in JWKS_VECTORS:
        w("    {%ssv, %ssv, %ssv, %d, %d},\n" % (cstr(v["name"]), cstr(v["json"]), cstr(v["expect"]), v["keys"],
                                                v["skipped"]))
    w("};\n\n}  // namespace jwt_vectors\n")

# Fuzz seeds (layout in fuzz/jwt_fuzz.cc): mode byte, then the input of that mode.
os.makedirs(CORPUS, exist_ok=True)
for fn in os.listdir(CORPUS):
    if fn.startswith("gen-"):
        os.remove(os.path.join(CORPUS, fn))


def seed(name, data):
    with open(os.path.join(CORPUS, "gen-" + name), "wb") as f:
        f.write(data)


# A small seed set: one token per algorithm and per kind of failure, a few JWK sets.
SEED_TOKENS = {"hs256_ok", "rs256_ok", "es256_ok", "eddsa_ok", "rs256_nokid_key2_ok", "iss_aud_ok", "unicode_sub_ok",
               "unknown_claims_ok", "whitespace_json_ok", "hs256_unnamed_key_any_kid_ok", "rs256_unknown_kid",
               "confusion_hs256_rsa_pem_kid", "alg_changed_rs256_to_es256", "none_empty_sig", "crit_header",
               "expired_by_61", "nbf_future_61", "aud_mismatch", "dup_claim_sub", "payload_lone_surrogate",
               "header_padding", "header_noncanonical_tail", "es256_der_signature", "eddsa_s_plus_l",
               "jwe_five_parts", "payload_deep_nesting", "fractional_exp_ok"}
SEED_JWKS = {"jwks_oct_hs256", "jwks_ec_off_curve", "jwks_okp_short", "jwks_rsa_private_members", "jwks_dup_kid",
             "jwks_empty_keys", "jwks_not_json", "jwks_skips_unusable"}
for v in VECTORS:
    if v["name"] in SEED_TOKENS:
        seed("tok-" + v["name"], bytes([0]) + v["token"].encode())
for v in JWKS_VECTORS:
    if v["name"] in SEED_JWKS:
        seed(v["name"], bytes([2]) + v["json"].encode())


def chunk(b):
    assert len(b) < 256
    return bytes([len(b)]) + b


for i, (hd, pl) in enumerate([
    ({"alg": "HS256", "typ": "JWT"}, base()),
    ({"alg": "HS256", "kid": "x"}, base(aud=["a", "ferry-relay"], iss="https://issuer.example", nbf=NOW)),
    ({"alg": "HS256"}, base(exp=NOW - 61)),
    ({"alg": "HS256"}, {"sub": "s", "exp": 1.5e9, "ferry_tunnels": [], "o": {"a": [True, False, None]}}),
    ({"alg": "HS256"}, '{"sub":"\\u00e9\\ud83d\\ude80","exp":%d}' % (NOW + 5)),
]):
    seed(f"resign-{i}", bytes([1]) + chunk(enc_json(hd)) + chunk(enc_json(pl)))
for i, t in enumerate(["", "QQ", "QUI", "QUJD", "_-_-", "AB==", "A", "eyJhbGciOiJIUzI1NiJ9"]):
    seed(f"b64-{i}", bytes([3]) + t.encode())
print(f"wrote {OUT}: {len(VECTORS)} token vectors, {len(JWKS_VECTORS)} JWK set vectors; seeds in {CORPUS}",
      file=sys.stderr)
