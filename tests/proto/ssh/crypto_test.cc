// Wire types, wolfCrypt wrappers and the packet cipher suites.
//
// Cipher known-answer vectors (kCipherKats) were produced by tests/proto/ssh/gen_cipher_vectors.py:
// AES-GCM, AES-CTR, HMAC-SHA2 and Poly1305 from Python's `cryptography` (OpenSSL), ChaCha20 as the
// original 64-bit-nonce variant written from the spec in that script (itself checked against the
// RFC 8439 §2.3.2 block vector). Each vector is two consecutive packets, so the GCM invocation
// counter, the CTR stream and the sequence numbers (across the 2^32 wrap for ChaCha) carry over.
// X25519 vectors: RFC 7748 §5.2 and §6.1; Ed25519: RFC 8032 §7.1 test 1 and 2; HMAC: RFC 4231.
#include <gtest/gtest.h>

#include <bit>
#include <random>
#include <set>

#include <string>
#include <vector>

#include "proto/ssh/chacha_wide.hh"
#include "proto/ssh/cipher.hh"
#include "proto/ssh/crypto.hh"
#include "proto/ssh/wire.hh"
#include "test_util.hh"

using namespace ferry;
using namespace ferry::ssh;
using ferry::ssh::test::hex;
using ferry::ssh::test::unhex;

namespace {

struct cipher_kat {
    const char* name;  // "cipher" or "cipher mac"
    const char* key;
    const char* iv;
    const char* mac_key;
    std::uint32_t seq0;
    const char* plain[2];
    const char* sealed[2];
};

const cipher_kat kCipherKats[] = {
    {"chacha20-poly1305@openssh.com",
     "01080f161d242b323940474e555c636a71787f868d949ba2a9b0b7bec5ccd3dae1e8eff6fd040b121920272e353c434a51585f666d747b828990979ea5acb3ba",
     "",
     "",
     4294967294u,
     {"000000200b5e000000070000000b68656c6c6f20776f726c64a0a1a2a3a4a5a6a7a8a9aa",
      "00000070060200000064000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f60616263a0a1a2a3a4a5"},
     {"9fcfc9ec603207b8618e08263e2430cfa344ff9951e01e6140f1d31a7f35ab2cbca4936e670ba62f3ef003c041e25f86acd49511",
      "5d99df6207fea7b95cf486bdfb503ad16e2c02b0f430574ecbf0fd260ee8c8baa38fc7c80f8b630b51db4b83d2ef3e339c7794d87afabbd947017c88ca72b3fb70ac7d362996dce0d0154a4174a2bd486b223826eff36556ff8d71acb193ce6d8553230a095d0c93c01bbe57e46b82a6e4e91dc0cdb35c75975db260696c700541ed883c"}},
    {"aes128-gcm@openssh.com",
     "05121f2c394653606d7a8794a1aebbc8",
     "0a0b0c0dffffffffffffffff",
     "",
     3u,
     {"000000200b5e000000070000000b68656c6c6f20776f726c64a0a1a2a3a4a5a6a7a8a9aa",
      "00000070060200000064000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f60616263a0a1a2a3a4a5"},
     {"00000020628ba283234cfbaaa4e2c1e1878eab68a7f56ec0d8850e79eaed83396a3727d920539325e43aae5a2f3affdae495b0dd",
      "0000007013f6f584a7c12e7fd4ec365e4c0431e89fdb6b2dcdaf88ce40c1a35194380f7da7b2ca579cae0d81542f0dedefba6715de512def40686f21f3dbe40a97336926914bc6109cfd24eea095583262b7a22e8aa2c930a20b2107728a966b336987034c489d730b459b15f7719325ebbd79d6412cc270ea800c28b373983e6e99ac1b"}},
    {"aes256-gcm@openssh.com",
     "05121f2c394653606d7a8794a1aebbc8d5e2effc091623303d4a5764717e8b98",
     "0a0b0c0dffffffffffffffff",
     "",
     3u,
     {"000000200b5e000000070000000b68656c6c6f20776f726c64a0a1a2a3a4a5a6a7a8a9aa",
      "00000070060200000064000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f60616263a0a1a2a3a4a5"},
     {"00000020df9af22a0753d021983907355cebcbd526f3ca96ed0a28cee7ef7c89f4164b8390f55d64ce7fac38dd2a945b4a1df995",
      "000000709e4e12dbec95508032dbf172828b96f044ba1024c30eff123f2889374979d5a75d535316e45e461a3f777d299f8664cd369ca93c1873ae1c865ce276bdcb18e5864c7a404f4f4806bcbab5186a070e81f6b0fd5d62665f0072931aedc49fca9aa6616af1a9a3000c6d27e50c6a96b9215cc6a86f35279038852cff1c606c16ae"}},
    {"aes128-ctr hmac-sha2-256",
     "090c0f1215181b1e2124272a2d303336",
     "0011223344556677ffffffffffffffff",
     "02070c11161b20252a2f34393e43484d52575c61666b70757a7f84898e93989d",
     41u,
     {"0000001c075e000000070000000b68656c6c6f20776f726c64a0a1a2a3a4a5a6",
      "0000007c120200000064000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f60616263a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1"},
     {"a2ec28e6caea63b55051853e4e9aff5e5c2f11aa2c63c5cc3e3ddecaeb5b00fa56a25bc748b7955240975eb45bdf1739e321a2c2eacd5151e32aa3b075fa1eab",
      "f8d839560c34f7fea790ef4fa693ddf84c3688bd8cb1637778c2305235b34e23ca47816fa6fb239b02c3bd245028790d1c4792db7d22d78ad20f40b36d5fb45d25f6039777403701c6068659c5422c19d3510413d637db010c4b64c42bec3f23c4ec0f3a496ed327058a795fedc82421e0b2af42831ceec719240c6e05341d15f194b5b1f94d395de9bbb73120856e0313ce119f48716704a3d8f9869a993fae"}},
    {"aes256-ctr hmac-sha2-512",
     "090c0f1215181b1e2124272a2d303336393c3f4245484b4e5154575a5d606366",
     "0011223344556677ffffffffffffffff",
     "02070c11161b20252a2f34393e43484d52575c61666b70757a7f84898e93989da2a7acb1b6bbc0c5cacfd4d9dee3e8edf2f7fc01060b10151a1f24292e33383d",
     41u,
     {"0000001c075e000000070000000b68656c6c6f20776f726c64a0a1a2a3a4a5a6",
      "0000007c120200000064000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f60616263a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1"},
     {"dbae08c9a1132b99a068609a7f64c07f2e70699520e7b2a6e27ea1f559cac6a0e83218b9484db5018a740723d56faaf2b131def5818f1b820e463a2fb50421518d829baf9b5be55858e1e171502e386529d0b4e669ddc096866d80e6409bef65",
      "332fe9660a8c17313e273a2648e18e63c459cbdeece8fbdc4cf3b1fd5a1de95a59713a381c99974e29985710c376313e6a587cae6be4c118230fab7b09b9f8bd17bf83fd50a6b59b4a2e6ae8ba3c5d5cbb1ee49f6464d10a5fca00581d3de674edfd6f56e4c705988f71bc1dc29c214233be7b90c02705c74b3540441922bb79b6d807cbc64abd99b27ce338e378b388e8de518637914c9e54e1bc375ff0402f7e6e075ec39126258ecd6d4a5d442b93e92aab8c8df9fe632750e74ed52d8b31"}},
    {"aes256-ctr hmac-sha2-256-etm@openssh.com",
     "090c0f1215181b1e2124272a2d303336393c3f4245484b4e5154575a5d606366",
     "0011223344556677ffffffffffffffff",
     "02070c11161b20252a2f34393e43484d52575c61666b70757a7f84898e93989d",
     41u,
     {"000000200b5e000000070000000b68656c6c6f20776f726c64a0a1a2a3a4a5a6a7a8a9aa",
      "00000070060200000064000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f60616263a0a1a2a3a4a5"},
     {"00000020d0f008d5a64a2b99a06408ff1303c73a357374d933286168257aa5f15dc6caac3e5427e55154a0709044367a57dfa3049a04f51fc123fb4e99eb30cfde530167",
      "00000070352de91a18ea17303c403e224ce5826fc855cfdae8ece7c050efb5f95e19e556557d3e3c189dab7215a45314c7723d32665478aa6fe0dd043f13af7f0dbdf4b11bb387f954a2c9e736526eecbe385150b712e09b6060cd1643d6045c1939ea78e1f16b52e0c339a4b34d7cdd025c2546bdbed9e9ca05c1e59591b167037487e916f787d7dcfe500569dad0635fc87417"}},
    {"aes128-ctr hmac-sha2-512-etm@openssh.com",
     "090c0f1215181b1e2124272a2d303336",
     "0011223344556677ffffffffffffffff",
     "02070c11161b20252a2f34393e43484d52575c61666b70757a7f84898e93989da2a7acb1b6bbc0c5cacfd4d9dee3e8edf2f7fc01060b10151a1f24292e33383d",
     41u,
     {"000000200b5e000000070000000b68656c6c6f20776f726c64a0a1a2a3a4a5a6a7a8a9aa",
      "00000070060200000064000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f60616263a0a1a2a3a4a5"},
     {"00000020a9b228facdb363b5505ded5b22fdf81b472c0ce63fac1602f939daceef570cf6a77bcc28da4cc53f4cad76427f7e1442c74b37b772f50a63fb01f3b7bd6a1e841fc19c9a0c5559bd5382aaf786b2a12cacdce2211c3e6d19ff88ce1250dfb28f",
      "00000070feda392a1e52f7ffa5f7eb4ba297d1f4403a8cb988b57f6b64de345631b7422fc64b856ba2ff1fa73effb920542c7501104b96df7926cb96ce1344b7695bb85129fa079373444b7dba7a825dc1462015df5d0017d233c71d105760c02fe8332fc8e00b3e4d6aef1b39b6b99f2d082025ad42e6faa194c6964143ff51c10f60b1e1f5c260537fffa2903d65f7258f3cb3a1ed03567521cf39ef184481b7657ebe36d993e97d4fc97231a6a3ce8f18a645"}},
};

std::unique_ptr<packet_cipher> make(const cipher_kat& k) {
    std::string n = k.name;
    std::string cn = n.substr(0, n.find(' '));
    auto c = cipher_by_name(cn);
    EXPECT_TRUE(c.has_value()) << cn;
    mac_id m = mac_id::none;
    if (n.find(' ') != std::string::npos) {
        auto mm = mac_by_name(n.substr(n.find(' ') + 1));
        EXPECT_TRUE(mm.has_value());
        m = *mm;
    }
    auto key = unhex(k.key), iv = unhex(k.iv), mk = unhex(k.mac_key);
    auto r = make_cipher(*c, m, key, iv, mk);
    EXPECT_TRUE(r) << n;
    return std::move(*r);
}

}  // namespace

// ---- wire ------------------------------------------------------------------------------------

TEST(SshWire, RoundTripsEveryType) {
    std::vector<std::byte> buf;
    writer w(buf);
    w.u8(7).boolean(true).u32(0xdeadbeef).u64(0x0102030405060708ull).string("abc");
    w.string(std::string_view("curve25519-sha256,ext-info-c"));
    auto mag = unhex("80ff");
    w.mpint_unsigned(mag);
    reader r(buf);
    EXPECT_EQ(*r.u8(), 7);
    EXPECT_TRUE(*r.boolean());
    EXPECT_EQ(*r.u32(), 0xdeadbeefu);
    EXPECT_EQ(*r.u64(), 0x0102030405060708ull);
    EXPECT_EQ(*r.text(), "abc");
    EXPECT_EQ(*r.name_list(), "curve25519-sha256,ext-info-c");
    EXPECT_EQ(hex(*r.mpint()), "0080ff");  // top bit set: a zero byte is prepended
    EXPECT_TRUE(r.expect_end());
}

TEST(SshWire, MpintEncodingFollowsRfc4251Examples) {
    // RFC 4251 §5 examples: 0 -> 00000000; 0x9a378f9b2e332a7 -> 0000000809a378f9b2e332a7;
    // 0x80 -> 000000020080.
    auto enc = [](std::string_view h) {
        std::vector<std::byte> b;
        auto m = unhex(h);
        writer(b).mpint_unsigned(m);
        return hex(b);
    };
    EXPECT_EQ(enc(""), "00000000");
    EXPECT_EQ(enc("0000"), "00000000");
    EXPECT_EQ(enc("09a378f9b2e332a7"), "0000000809a378f9b2e332a7");
    EXPECT_EQ(enc("000080"), "000000020080");
}

TEST(SshWire, ReaderNeverReadsPastTheEnd) {
    // A string claiming 5 bytes with 3 present, at every truncation of a valid buffer.
    auto full = unhex("0000000568656c6c6f");
    for (std::size_t n = 0; n < full.size(); ++n) {
        reader r(bytes(full).first(n));
        auto s = r.string();
        ASSERT_FALSE(s);
        EXPECT_EQ(s.code(), errc::malformed);
    }
    auto huge = unhex("ffffffff41");
    reader r(huge);
    EXPECT_FALSE(r.string());
    reader r2(bytes(full).first(2));
    EXPECT_FALSE(r2.u32());
    EXPECT_FALSE(reader(bytes{}).u8());
    EXPECT_FALSE(reader(bytes(full).first(7)).u64());
}

TEST(SshWire, RejectsBadNameListsAndMpints) {
    auto one = [](std::string_view list) {
        std::vector<std::byte> b;
        writer(b).string(list);
        return reader(b).name_list();
    };
    EXPECT_TRUE(one(""));
    EXPECT_TRUE(one("a,b,c"));
    EXPECT_FALSE(one(","));
    EXPECT_FALSE(one("a,,b"));
    EXPECT_FALSE(one("a,"));
    EXPECT_FALSE(one(std::string_view("a\0b", 3)));
    EXPECT_FALSE(one("a b"));
    EXPECT_FALSE(one(std::string(65, 'x')));
    EXPECT_TRUE(one(std::string(64, 'x')));
    auto mp = [](std::string_view h) { auto b = unhex(h); return reader(b).mpint(); };
    EXPECT_TRUE(mp("00000000"));
    EXPECT_FALSE(mp("0000000100"));       // zero must be empty
    EXPECT_FALSE(mp("000000020001"));     // superfluous 0x00
    EXPECT_FALSE(mp("00000002ff80"));     // superfluous 0xff
    EXPECT_TRUE(mp("000000020080"));
}

TEST(SshWire, NameListHelpers) {
    EXPECT_TRUE(name_list_contains("a,bb,c", "bb"));
    EXPECT_FALSE(name_list_contains("a,bb,c", "b"));
    EXPECT_FALSE(name_list_contains("", "a"));
    name_iter it("x,y");
    EXPECT_EQ(it.next(), "x");
    EXPECT_EQ(it.next(), "y");
    EXPECT_EQ(it.next(), "");
}

TEST(SshWire, ExpectEndRejectsTrailingBytes) {
    auto b = unhex("0102");
    reader r(b);
    (void)r.u8();
    auto s = r.expect_end();
    ASSERT_FALSE(s);
    EXPECT_EQ(s.err().offset, 1u);
}

// ---- crypto ----------------------------------------------------------------------------------

TEST(SshCrypto, X25519Rfc7748) {
    // §5.2 vector 2: the u-coordinate has its top bit set, which X25519 must ignore.
    x25519_key k{}, u{}, out{};
    auto kb = unhex("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d");
    auto ub = unhex("e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493");
    std::copy(kb.begin(), kb.end(), k.begin());
    std::copy(ub.begin(), ub.end(), u.begin());
    x25519_key dummy{};
    ASSERT_TRUE(x25519_public(k, dummy));  // clamps k in place
    ASSERT_TRUE(x25519_shared(k, u, out));
    EXPECT_EQ(hex(out), "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957");

    // §6.1 Diffie-Hellman: Alice's and Bob's keys and the shared secret.
    x25519_key a{}, b{}, apub{}, bpub{}, s1{}, s2{};
    auto ab = unhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    auto bb = unhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
    std::copy(ab.begin(), ab.end(), a.begin());
    std::copy(bb.begin(), bb.end(), b.begin());
    ASSERT_TRUE(x25519_public(a, apub));
    ASSERT_TRUE(x25519_public(b, bpub));
    EXPECT_EQ(hex(apub), "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    EXPECT_EQ(hex(bpub), "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    ASSERT_TRUE(x25519_shared(a, bpub, s1));
    ASSERT_TRUE(x25519_shared(b, apub, s2));
    EXPECT_EQ(hex(s1), "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    EXPECT_EQ(s1, s2);
}

TEST(SshCrypto, X25519RejectsLowOrderPoints) {
    x25519_key a{}, apub{}, zero{}, out{};
    a[0] = std::byte{1};
    ASSERT_TRUE(x25519_public(a, apub));
    auto r = x25519_shared(a, zero, out);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.code(), errc::crypto);
    x25519_key one{};
    one[0] = std::byte{1};  // u = 1 has order 4... its multiple is zero after clamping
    EXPECT_FALSE(x25519_shared(a, one, out));
}

TEST(SshCrypto, Ed25519Rfc8032) {
    // Test 1 (empty message) and test 2 (one byte 0x72).
    auto k1 = ed25519_private::from_seed(
        unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"));
    ASSERT_TRUE(k1);
    EXPECT_EQ(hex(k1->public_key()),
              "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    ed25519_signature sig{};
    ASSERT_TRUE(k1->sign({}, sig));
    EXPECT_EQ(hex(sig),
              "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
              "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
    EXPECT_TRUE(ed25519_verify(k1->public_key(), {}, sig));

    auto k2 = ed25519_private::from_seed(
        unhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"));
    ASSERT_TRUE(k2);
    auto m = unhex("72");
    ASSERT_TRUE(k2->sign(m, sig));
    EXPECT_EQ(hex(sig),
              "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
              "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00");
    EXPECT_TRUE(ed25519_verify(k2->public_key(), m, sig));
    // A flipped bit in the message, the signature or the key fails.
    auto m2 = unhex("73");
    EXPECT_FALSE(ed25519_verify(k2->public_key(), m2, sig));
    sig[10] ^= std::byte{1};
    EXPECT_FALSE(ed25519_verify(k2->public_key(), m, sig));
    sig[10] ^= std::byte{1};
    EXPECT_FALSE(ed25519_verify(k1->public_key(), m, sig));
    EXPECT_FALSE(ed25519_verify(k2->public_key(), m, bytes(sig).first(63)));
}

TEST(SshCrypto, HashesAndHmacRfc4231) {
    EXPECT_EQ(hex(sha256(as_bytes(std::string_view("abc")))),
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    hasher h(hash_alg::sha512);
    h.update(as_bytes(std::string_view("a")));
    h.update(as_bytes(std::string_view("bc")));
    std::array<std::byte, 64> d{};
    h.final(d);
    EXPECT_EQ(hex(d).substr(0, 32), "ddaf35a193617abacc417349ae204131");
    // RFC 4231 test case 2.
    std::array<std::byte, 64> out{};
    ASSERT_TRUE(hmac(hash_alg::sha256, as_bytes(std::string_view("Jefe")),
                     as_bytes(std::string_view("what do ya want for nothing?")), out));
    EXPECT_EQ(hex(bytes(out).first(32)),
              "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    ASSERT_TRUE(hmac(hash_alg::sha512, as_bytes(std::string_view("Jefe")),
                     as_bytes(std::string_view("what do ya want for nothing?")), out));
    EXPECT_EQ(hex(out).substr(0, 32), "164b7a7bfcf819e2e395fbe73b56e0a3");
}

TEST(SshCrypto, ConstantTimeEqual) {
    auto a = unhex("00010203"), b = unhex("00010203"), c = unhex("00010213");
    EXPECT_TRUE(equal_ct(a, b));
    EXPECT_FALSE(equal_ct(a, c));
    EXPECT_FALSE(equal_ct(a, bytes(b).first(3)));
}

TEST(SshCrypto, SystemRngProducesDistinctOutput) {
    auto r = system_rng::create();
    ASSERT_TRUE(r);
    std::array<std::byte, 32> a{}, b{};
    ASSERT_TRUE((*r)->fill(a));
    ASSERT_TRUE((*r)->fill(b));
    EXPECT_NE(a, b);
    std::vector<std::byte> big(200000);
    ASSERT_TRUE((*r)->fill(big));  // larger than one wolfCrypt request
}

TEST(SystemRng, SmallRequestsAcrossManyBlocksNeverRepeat) {
    // Small requests come from the buffered keystream (rekeyed per 4 KiB block, reseeded from
    // the DRBG every 256 blocks): 2 MiB in 16-byte draws crosses both, and no draw may repeat
    // (a repeat of 128 random bits would mean a reused key or offset).
    auto r = system_rng::create();
    ASSERT_TRUE(r);
    std::set<std::array<std::byte, 16>> seen;
    std::size_t ones = 0;
    for (int i = 0; i < (2 << 20) / 16; ++i) {
        std::array<std::byte, 16> v{};
        ASSERT_TRUE((*r)->fill(v));
        ASSERT_TRUE(seen.insert(v).second) << "draw " << i << " repeated";
        for (std::byte x : v) ones += std::popcount(std::to_integer<unsigned>(x));
        if (i % 997 == 0) {  // odd sizes and a large request in between
            std::array<std::byte, 7> odd{};
            ASSERT_TRUE((*r)->fill(odd));
            std::vector<std::byte> big(1500);
            ASSERT_TRUE((*r)->fill(big));
        }
    }
    // Bit balance over 16 Mbit: far inside 6 sigma (sigma = 2048 bits).
    const double bits = double(2 << 20) * 8;
    EXPECT_NEAR(double(ones), bits / 2, 6 * 2048.0);
}

// ---- ciphers ---------------------------------------------------------------------------------

TEST(SshCipher, KnownAnswerSealAndOpen) {
    for (const auto& k : kCipherKats) {
        SCOPED_TRACE(k.name);
        auto enc = make(k);
        auto dec = make(k);
        for (int i = 0; i < 2; ++i) {
            std::uint32_t seq = k.seq0 + std::uint32_t(i);
            auto plain = unhex(k.plain[i]);
            auto want = unhex(k.sealed[i]);
            std::vector<std::byte> buf(plain.size() + enc->tag_size());
            std::copy(plain.begin(), plain.end(), buf.begin());
            ASSERT_TRUE(enc->seal(seq, mut_bytes(buf).first(plain.size()),
                                  mut_bytes(buf).subspan(plain.size())));
            EXPECT_EQ(hex(buf), hex(want)) << "packet " << i;

            // Open in place: length first, then the whole packet.
            auto len = dec->open_length(seq, mut_bytes(buf).first(dec->length_bytes()));
            ASSERT_TRUE(len);
            EXPECT_EQ(*len, plain.size() - 4);
            ASSERT_TRUE(dec->open(seq, mut_bytes(buf).first(plain.size()),
                                  bytes(buf).subspan(plain.size())));
            EXPECT_EQ(hex(bytes(buf).first(plain.size())), hex(plain));
        }
    }
}

// ---- ChaCha20, 16 blocks at a time (chacha_wide.hh) ----------------------------------------------

namespace {

std::uint32_t le32(const std::byte* p) {
    return std::to_integer<std::uint32_t>(p[0]) | std::to_integer<std::uint32_t>(p[1]) << 8 |
           std::to_integer<std::uint32_t>(p[2]) << 16 | std::to_integer<std::uint32_t>(p[3]) << 24;
}

// Keystream from the one-block reference, XORed into `data` from block `counter` on.
void ref_xor(const std::uint32_t key[8], const unsigned char nonce[8], std::uint64_t counter,
             std::vector<std::byte>& data, std::size_t from = 0) {
    unsigned char ks[64];
    for (std::size_t off = from; off < data.size(); off += 64, ++counter) {
        detail::chacha_block_ref(key, nonce, counter, ks);
        for (std::size_t i = 0; i < 64 && off + i < data.size(); ++i) data[off + i] ^= std::byte(ks[i]);
    }
}

}  // namespace

TEST(ChachaWide, ReferenceBlockMatchesRfc8439) {
    // RFC 8439 §2.3.2 in the original layout: words 12-13 are the 64-bit counter
    // (1 | 0x09000000 << 32), words 14-15 the nonce bytes 00 00 00 4a 00 00 00 00.
    std::uint32_t key[8];
    for (std::uint32_t i = 0; i < 8; ++i) key[i] = (4 * i) | (4 * i + 1) << 8 | (4 * i + 2) << 16 | (4 * i + 3) << 24;
    const unsigned char nonce[8] = {0, 0, 0, 0x4a, 0, 0, 0, 0};
    unsigned char out[64];
    detail::chacha_block_ref(key, nonce, 0x0900000000000001ull, out);
    EXPECT_EQ(hex(bytes(reinterpret_cast<const std::byte*>(out), 64)),
              "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
              "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e");
}

TEST(ChachaWide, SixteenBlocksMatchTheReference) {
    if (!detail::chacha_wide_available()) GTEST_SKIP() << "no AVX-512F on this CPU";
    std::mt19937_64 rng(20261207);
    // Counters where the low word wraps inside a 16-block chunk, and the 64-bit wrap.
    const std::uint64_t counters[] = {0, 1, 7, 0xfffffff8ull, 0x1fffffff0ull, 0xfffffffffffffff9ull, rng()};
    for (std::uint64_t counter : counters) {
        for (std::size_t len : {std::size_t(1024), std::size_t(3000), std::size_t(32768 + 511)}) {
            SCOPED_TRACE(testing::Message() << "counter " << counter << " len " << len);
            std::uint32_t key[8];
            for (auto& w : key) w = static_cast<std::uint32_t>(rng());
            unsigned char nonce[8];
            for (auto& b : nonce) b = static_cast<unsigned char>(rng());
            std::vector<std::byte> in(len);
            for (auto& b : in) b = std::byte(rng());
            std::vector<std::byte> out(len), want = in;
            const std::size_t done = detail::chacha_wide_xor(key, nonce, counter, in.data(), out.data(), len);
            ASSERT_EQ(done, len / 1024 * 1024);
            ref_xor(key, nonce, counter, want);
            EXPECT_EQ(hex(bytes(out).first(done)), hex(bytes(want).first(done)));
            // In place gives the same.
            auto inplace = in;
            detail::chacha_wide_xor(key, nonce, counter, inplace.data(), inplace.data(), len);
            EXPECT_EQ(hex(bytes(inplace).first(done)), hex(bytes(want).first(done)));
        }
    }
}

TEST(ChachaWide, LargePacketsSealLikeTheReference) {
    // chacha20-poly1305@openssh.com packets of every size class: the body is wide chunks plus a
    // wolfCrypt tail that must continue at the right block. Checked against the reference
    // keystream (counter 1 on, nonce = big-endian sequence number) and opened again.
    std::mt19937_64 rng(7);
    std::vector<std::byte> key(64);
    for (auto& b : key) b = std::byte(rng());
    auto c = make_cipher(cipher_id::chacha20_poly1305, mac_id::none, key, {}, {});
    auto d = make_cipher(cipher_id::chacha20_poly1305, mac_id::none, key, {}, {});
    ASSERT_TRUE(c && d);
    std::uint32_t k2[8];
    for (int i = 0; i < 8; ++i) k2[i] = le32(key.data() + 4 * i);
    std::uint32_t seq = 0xfffffff0u;
    for (std::size_t body : {std::size_t(1020), std::size_t(1024), std::size_t(1028), std::size_t(5000),
                             std::size_t(32768), std::size_t(35000)}) {
        SCOPED_TRACE(body);
        std::vector<std::byte> buf(4 + body + 16);
        store_be32(buf.data(), static_cast<std::uint32_t>(body));
        for (std::size_t i = 4; i < 4 + body; ++i) buf[i] = std::byte(rng());
        std::vector<std::byte> want(buf.begin() + 4, buf.begin() + 4 + std::ptrdiff_t(body));
        const std::vector<std::byte> plain = want;
        unsigned char nonce[8];
        for (int i = 0; i < 8; ++i) nonce[i] = static_cast<unsigned char>(std::uint64_t(seq) >> (56 - 8 * i));
        ref_xor(k2, nonce, 1, want);
        ASSERT_TRUE((*c)->seal(seq, mut_bytes(buf).first(4 + body), mut_bytes(buf).subspan(4 + body)));
        EXPECT_EQ(hex(bytes(buf).subspan(4, body)), hex(want));
        ASSERT_TRUE((*d)->open_length(seq, mut_bytes(buf).first(4)));
        ASSERT_TRUE((*d)->open(seq, mut_bytes(buf).first(4 + body), bytes(buf).subspan(4 + body)));
        EXPECT_EQ(hex(bytes(buf).subspan(4, body)), hex(plain));
        ++seq;
    }
}

TEST(SshCipher, SealFromGivesTheSameBytesAsSeal) {
    // seal_from() reads the body from its own buffer (AES-GCM streams it; the others copy it in
    // first): for every suite and many splits, the same packet and tag as seal() on the whole.
    // A third cipher object alternates seal() and seal_from() (one-shot and streaming GCM on
    // one key schedule and invocation counter) and must give the same bytes too.
    std::mt19937_64 rng(99);
    for (const auto& k : kCipherKats) {
        SCOPED_TRACE(k.name);
        auto a = make(k);
        auto b = make(k);
        auto m = make(k);
        int turn = 0;
        for (std::size_t body_len : {std::size_t(0), std::size_t(1), std::size_t(15), std::size_t(16),
                                     std::size_t(17), std::size_t(1000), std::size_t(5000), std::size_t(32768)}) {
            for (std::size_t head_len : {std::size_t(0), std::size_t(1), std::size_t(9), std::size_t(13)}) {
                SCOPED_TRACE(testing::Message() << "head " << head_len << " body " << body_len);
                // A block-aligned packet: length, padding length, head, body, padding >= 4.
                const std::size_t blk = a->block_size();
                const std::size_t aligned = 4 + 1 + head_len + body_len - (a->length_in_clear() ? 4 : 0);
                std::size_t pad = blk - aligned % blk;
                if (pad < 4) pad += blk;
                const std::size_t plen = 1 + head_len + body_len + pad;
                std::vector<std::byte> whole(4 + plen + a->tag_size());
                store_be32(whole.data(), static_cast<std::uint32_t>(plen));
                whole[4] = std::byte(pad);
                for (std::size_t i = 5; i < 4 + plen; ++i) whole[i] = std::byte(rng());
                std::vector<std::byte> body(whole.begin() + std::ptrdiff_t(5 + head_len),
                                            whole.begin() + std::ptrdiff_t(5 + head_len + body_len));
                auto split = whole;
                for (std::size_t i = 0; i < body_len; ++i) split[5 + head_len + i] = std::byte{0xEE};  // not read
                auto mixed = (turn % 2 == 0) ? whole : split;
                const std::uint32_t seq = static_cast<std::uint32_t>(rng());
                ASSERT_TRUE(a->seal(seq, mut_bytes(whole).first(4 + plen), mut_bytes(whole).subspan(4 + plen)));
                ASSERT_TRUE(b->seal_from(seq, mut_bytes(split).first(4 + plen), 5 + head_len, body,
                                         mut_bytes(split).subspan(4 + plen)));
                ASSERT_EQ(hex(split), hex(whole));
                if (turn++ % 2 == 0) {
                    ASSERT_TRUE(m->seal(seq, mut_bytes(mixed).first(4 + plen), mut_bytes(mixed).subspan(4 + plen)));
                } else {
                    ASSERT_TRUE(m->seal_from(seq, mut_bytes(mixed).first(4 + plen), 5 + head_len, body,
                                             mut_bytes(mixed).subspan(4 + plen)));
                }
                ASSERT_EQ(hex(mixed), hex(whole));
            }
        }
    }
}

TEST(SshCipher, EveryBitFlipIsCaught) {
    // Flip each bit of the sealed packet (length field and tag included): open must fail, with
    // errc::ssh_mac whenever the length still decodes to the original value.
    for (const auto& k : kCipherKats) {
        SCOPED_TRACE(k.name);
        auto plain = unhex(k.plain[0]);
        auto sealed = unhex(k.sealed[0]);
        for (std::size_t bit = 0; bit < sealed.size() * 8; bit += 3) {
            auto dec = make(k);
            auto buf = sealed;
            buf[bit / 8] ^= std::byte(1u << (bit % 8));
            auto len = dec->open_length(k.seq0, mut_bytes(buf).first(dec->length_bytes()));
            ASSERT_TRUE(len);
            if (*len != plain.size() - 4) continue;  // the framer would reject or wait
            auto r = dec->open(k.seq0, mut_bytes(buf).first(plain.size()),
                               bytes(buf).subspan(plain.size()));
            ASSERT_FALSE(r) << "bit " << bit;
            EXPECT_EQ(r.code(), errc::ssh_mac);
        }
    }
}

TEST(SshCipher, WrongSequenceNumberFailsTheMac) {
    for (const auto& k : kCipherKats) {
        std::string n = k.name;
        if (n.find("gcm") != std::string::npos) continue;  // GCM binds its own counter instead
        SCOPED_TRACE(n);
        auto dec = make(k);
        auto buf = unhex(k.sealed[0]);
        auto plain = unhex(k.plain[0]);
        std::uint32_t seq = k.seq0 + 5;
        (void)dec->open_length(seq, mut_bytes(buf).first(dec->length_bytes()));
        EXPECT_EQ(dec->open(seq, mut_bytes(buf).first(plain.size()),
                            bytes(buf).subspan(plain.size()))
                      .code(),
                  errc::ssh_mac);
    }
}

TEST(SshCipher, GcmRejectsAReplayedPacket) {
    // The invocation counter moved on: the same sealed packet opened twice fails the second time.
    const auto& k = kCipherKats[2];
    ASSERT_STREQ(k.name, "aes256-gcm@openssh.com");
    auto dec = make(k);
    auto plain = unhex(k.plain[0]);
    for (int i = 0; i < 2; ++i) {
        auto buf = unhex(k.sealed[0]);
        auto r = dec->open(0, mut_bytes(buf).first(plain.size()), bytes(buf).subspan(plain.size()));
        EXPECT_EQ(bool(r), i == 0);
    }
}

TEST(SshCipher, TablesAndFactoryChecks) {
    EXPECT_EQ(cipher_by_name("aes256-gcm@openssh.com"), cipher_id::aes256_gcm);
    EXPECT_FALSE(cipher_by_name("none").has_value());  // never negotiable
    EXPECT_FALSE(cipher_by_name("3des-cbc").has_value());
    EXPECT_EQ(mac_by_name("hmac-sha2-512-etm@openssh.com"), mac_id::hmac_sha2_512_etm);
    EXPECT_EQ(info(cipher_id::chacha20_poly1305).key_len, 64);
    std::vector<std::byte> key(16), iv(16), mk(32);
    EXPECT_FALSE(make_cipher(cipher_id::aes256_gcm, mac_id::none, key, iv, {}));  // short key
    EXPECT_FALSE(make_cipher(cipher_id::aes128_ctr, mac_id::none, key, iv, {}));  // needs a MAC
    EXPECT_TRUE(make_cipher(cipher_id::aes128_ctr, mac_id::hmac_sha2_256, key, iv, mk));
}
