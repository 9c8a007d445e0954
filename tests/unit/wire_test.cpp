// The sidecar's wire codec (net/, docs/wire-protocol.md): every message
// round trips, chunking does not matter, and every kind of bad input is
// refused with a reason that says what is wrong.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "flowbus/wire/codec.hpp"

using namespace flowbus::wire;

namespace {

using Bytes = std::vector<uint8_t>;

void append(Bytes& out, std::span<const uint8_t> frame) { out.insert(out.end(), frame.begin(), frame.end()); }

Bytes as_bytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

Nonce nonce_of(uint8_t seed) {
  Nonce n;
  for (size_t i = 0; i < n.size(); ++i) n[i] = static_cast<uint8_t>(seed + i);
  return n;
}

const Bytes kSchema = {1, 2, 3, 4, 5};

StreamOpenView stream_open_of(uint32_t stream, uint64_t first_sequence) {
  StreamOpenView m;
  m.stream = stream;
  m.topic = "plant.sensors";
  m.type = "examples.Reading";
  m.schema_id = "fnv1a64:0123456789abcdef";
  m.schema = kSchema;
  m.policy = TopicPolicy::Latest;
  m.publisher_id = 0xfeedfacecafebeefull;
  m.publisher = "press-1";
  m.source = "flowbus://host-a/plant/press-1";
  m.origin_node = "host-a";
  m.first_sequence = first_sequence;
  m.ring_size = 64u << 20;
  m.retention_s = 7200;
  m.slow_consumer_timeout_ns = UINT64_MAX;
  return m;
}

// Hello and Auth, the two frames every connection starts with.
Bytes handshake(FrameWriter& w) {
  Bytes out;
  const Nonce n = nonce_of(7);
  append(out, w.hello({kProtocolVersion, "host-a", n, "flowbus test"}));
  append(out, w.auth({}));
  return out;
}

// A connection that has opened stream 1 at sequence 1.
Bytes open_stream(FrameWriter& w) {
  Bytes out = handshake(w);
  append(out, w.stream_open(stream_open_of(1, 1)));
  return out;
}

// Feeds everything at once and returns the DecodeError's message ("" if none).
std::string decode_error(const Bytes& bytes, DecoderLimits limits = {}) {
  FrameDecoder d(limits);
  d.feed(bytes);
  try {
    while (d.next()) {
    }
  } catch (const DecodeError& e) {
    EXPECT_TRUE(d.failed());
    EXPECT_EQ(d.error(), e.what());
    return e.what();
  }
  return "";
}

// One line per frame with every field, to compare decodings.
std::string describe(const FrameView& f) {
  std::ostringstream o;
  std::visit(
      [&](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, HelloView>) {
          o << "Hello " << m.protocol_version << ' ' << m.node << ' ' << m.software << ' ' << m.nonce.size();
          for (uint8_t b : m.nonce) o << ' ' << int(b);
        } else if constexpr (std::is_same_v<T, AuthView>) {
          o << "Auth " << m.mac.size();
          for (uint8_t b : m.mac) o << ' ' << int(b);
        } else if constexpr (std::is_same_v<T, RefuseView>) {
          o << "Refuse " << to_string(m.code) << ' ' << m.reason << ' ' << m.local_version << ' ' << m.remote_version;
        } else if constexpr (std::is_same_v<T, SubscribeView>) {
          o << "Subscribe";
          for (size_t i = 0; i < m.patterns.size(); ++i) o << ' ' << m.patterns[i];
          for (const Resume& r : m.resume) o << " r" << r.publisher_id() << ':' << r.next_sequence();
        } else if constexpr (std::is_same_v<T, StreamOpenView>) {
          o << "StreamOpen " << m.stream << ' ' << m.topic << ' ' << m.type << ' ' << m.schema_id << ' '
            << m.schema.size() << ' ' << int(m.policy) << ' ' << m.publisher_id << ' ' << m.publisher << ' '
            << m.source << ' ' << m.origin_node << ' ' << m.first_sequence << ' ' << m.ring_size << ' ' << m.retention_s
            << ' ' << m.slow_consumer_timeout_ns;
        } else if constexpr (std::is_same_v<T, EventBatchView>) {
          o << "EventBatch " << m.stream;
          for (const EventEntry& e : m.entries) {
            const auto p = m.payload(e);
            o << " [" << e.sequence() << ' ' << e.time_ns() << ' ' << e.flags() << ' ' << m.subject(e) << ' '
              << std::string(p.begin(), p.end()) << ']';
          }
        } else if constexpr (std::is_same_v<T, GapView>) {
          o << "Gap " << m.stream << ' ' << m.from_sequence << ' ' << m.to_sequence << ' ' << m.reason;
        } else if constexpr (std::is_same_v<T, AckView>) {
          o << "Ack " << m.stream << ' ' << m.next_sequence;
        } else if constexpr (std::is_same_v<T, HeartbeatView>) {
          o << "Heartbeat " << m.time_ns;
        } else if constexpr (std::is_same_v<T, ByeView>) {
          o << "Bye " << m.reason;
        } else if constexpr (std::is_same_v<T, StreamRefuseView>) {
          o << "StreamRefuse " << m.stream << ' ' << to_string(m.code) << ' ' << m.reason;
        }
      },
      f);
  return o.str();
}

// Eleven frames of every kind but Refuse (which ends the connection before Bye).
Bytes eleven_frames() {
  FrameWriter w;
  Bytes out = handshake(w);  // 1, 2
  const std::vector<std::string> patterns = {"plant.*", "orders"};
  const std::vector<Resume> resume = {Resume(11, 100), Resume(12, 200)};
  append(out, w.subscribe(patterns, resume));         // 3
  append(out, w.stream_open(stream_open_of(1, 10)));  // 4
  EventBatchWriter b(4096, 16);
  b.start(1);
  const std::string payloads[] = {"alpha", "", "gamma-gamma"};
  const std::string subjects[] = {"s1", "subject-two", ""};
  for (uint64_t i = 0; i < 3; ++i) {
    const std::string& p = payloads[i];
    EXPECT_TRUE(b.add(10 + i * 2, 1000 + i, subjects[i], {reinterpret_cast<const uint8_t*>(p.data()), p.size()},
                      static_cast<uint16_t>(i)));
  }
  append(out, b.finish());                                   // 5
  append(out, w.gap({1, 20, 30, "no longer retained"}));     // 6
  b.start(1);
  EXPECT_TRUE(b.add(30, 2000, "late", as_bytes("x")));
  append(out, b.finish());                                   // 7
  append(out, w.ack({1, 31}));                               // 8
  append(out, w.heartbeat({123456789}));                     // 9
  append(out, w.stream_refuse({1, RefuseCode::SchemaMismatch, "other type"}));  // 10
  append(out, w.bye({"shutting down"}));                     // 11
  return out;
}

std::vector<std::string> decode_in_chunks(const Bytes& bytes, const std::vector<size_t>& chunks) {
  FrameDecoder d;
  std::vector<std::string> out;
  size_t at = 0;
  for (size_t i = 0; at < bytes.size(); ++i) {
    const size_t n = std::min(chunks[i % chunks.size()], bytes.size() - at);
    d.feed({bytes.data() + at, n});
    at += n;
    while (auto f = d.next()) out.push_back(describe(*f));
  }
  EXPECT_EQ(d.buffered(), 0u);
  return out;
}

}  // namespace

TEST(WireTest, EveryMessageRoundTrips) {
  const Bytes bytes = eleven_frames();
  const std::vector<std::string> frames = decode_in_chunks(bytes, {bytes.size()});
  const Nonce n = nonce_of(7);
  std::string hello = "Hello " + std::to_string(kProtocolVersion) + " host-a flowbus test 32";
  for (uint8_t b : n) hello += ' ' + std::to_string(b);
  const std::vector<std::string> expected = {
      hello,
      "Auth 0",
      "Subscribe plant.* orders r11:100 r12:200",
      "StreamOpen 1 plant.sensors examples.Reading fnv1a64:0123456789abcdef 5 1 18369614221190020847 press-1 "
      "flowbus://host-a/plant/press-1 host-a 10 67108864 7200 18446744073709551615",
      "EventBatch 1 [10 1000 0 s1 alpha] [12 1001 1 subject-two ] [14 1002 2  gamma-gamma]",
      "Gap 1 20 30 no longer retained",
      "EventBatch 1 [30 2000 0 late x]",
      "Ack 1 31",
      "Heartbeat 123456789",
      "StreamRefuse 1 SchemaMismatch other type",
      "Bye shutting down",
  };
  EXPECT_EQ(frames, expected);

  // Refuse, and Auth with a MAC, which eleven_frames() does not carry.
  FrameWriter w;
  Bytes refused;
  const Nonce n2 = nonce_of(1);
  append(refused, w.hello({kProtocolVersion, "b", n2, ""}));
  const Mac mac = compute_auth_mac("secret", n2, "b");
  append(refused, w.auth({mac}));
  append(refused, w.refuse({RefuseCode::ShuttingDown, "bye now", 1, 3}));
  FrameDecoder d;
  d.feed(refused);
  ASSERT_TRUE(d.next().has_value());
  const auto auth = d.next();
  ASSERT_TRUE(auth && std::holds_alternative<AuthView>(*auth));
  const auto& got = std::get<AuthView>(*auth).mac;
  EXPECT_TRUE(std::equal(got.begin(), got.end(), mac.begin(), mac.end()));
  const auto refuse = d.next();
  ASSERT_TRUE(refuse && std::holds_alternative<RefuseView>(*refuse));
  EXPECT_EQ(describe(*refuse), "Refuse ShuttingDown bye now 1 3");
  EXPECT_FALSE(d.next().has_value());
  EXPECT_EQ(d.frames(), 3u);
}

TEST(WireTest, ChunkingDoesNotChangeTheFrames) {
  const Bytes bytes = eleven_frames();
  const std::vector<std::string> whole = decode_in_chunks(bytes, {bytes.size()});
  ASSERT_EQ(whole.size(), 11u);
  EXPECT_EQ(decode_in_chunks(bytes, {1}), whole);
  std::mt19937 rng(42);
  for (int round = 0; round < 20; ++round) {
    std::vector<size_t> chunks;
    for (int i = 0; i < 50; ++i) chunks.push_back(std::uniform_int_distribution<size_t>(1, 200)(rng));
    EXPECT_EQ(decode_in_chunks(bytes, chunks), whole) << "round " << round;
  }
}

TEST(WireTest, IncompleteFrameWaitsForMoreBytes) {
  FrameWriter w;
  const Bytes bytes = handshake(w);
  FrameDecoder d;
  d.feed({bytes.data(), bytes.size() - 1});
  ASSERT_TRUE(d.next().has_value());   // Hello
  EXPECT_FALSE(d.next().has_value());  // Auth lacks its last byte
  EXPECT_FALSE(d.failed());
  d.feed({bytes.data() + bytes.size() - 1, 1});
  EXPECT_TRUE(d.next().has_value());
}

TEST(WireTest, TruncatedFrameIsRefused) {
  FrameWriter w;
  const Nonce n = nonce_of(0);
  const auto frame = w.hello({kProtocolVersion, "host-a", n, "flowbus"});
  // The frame cut short, its length prefix saying so: offsets now point past the end.
  Bytes cut(frame.begin(), frame.end() - 24);
  const uint32_t len = static_cast<uint32_t>(cut.size() - 4);
  std::memcpy(cut.data(), &len, 4);
  EXPECT_NE(decode_error(cut).find("frame 1: not a valid Frame (the FlatBuffers verifier refused it"),
            std::string::npos);
  // A length below the FlatBuffers minimum.
  EXPECT_EQ(decode_error({4, 0, 0, 0, 0, 0, 0, 0}), "frame 1: length 4 is below the minimum of 8 bytes");
}

TEST(WireTest, OversizedLengthIsRefusedBeforeBuffering) {
  EXPECT_EQ(decode_error({0xf0, 0xff, 0xff, 0x0f}),
            "frame 1: length 268435440 exceeds the limit of " + std::to_string(kHandshakeMaxFrameBytes) +
                " bytes before authentication (Hello and Auth are small)");
  FrameWriter w;
  Bytes bytes = handshake(w);
  // After Auth, frames up to the full limit: one above it is refused on its prefix.
  Bytes after = bytes;
  append(after, Bytes{0xf0, 0xff, 0xff, 0x0f});
  EXPECT_EQ(decode_error(after),
            "frame 3: length 268435440 exceeds the limit of " + std::to_string(kDefaultMaxFrameBytes) + " bytes");
  DecoderLimits small;
  small.max_frame_bytes = 16;
  EXPECT_NE(decode_error(bytes, small).find("exceeds the limit of 16 bytes"), std::string::npos);
}

TEST(WireTest, BeforeAuthOnlyHandshakeSizedFramesAreTakenAndNoneIsBuffered) {
  // A 16 MiB length prefix as a peer's first bytes, or as its second frame
  // (after Hello, before Auth): refused on the prefix, before any of its body.
  const uint32_t big = 16u << 20;
  Bytes first(4);
  std::memcpy(first.data(), &big, 4);
  FrameDecoder d;
  d.feed(first);
  EXPECT_THROW(d.next(), DecodeError);
  EXPECT_NE(d.error().find("frame 1: length 16777216 exceeds the limit of 16384 bytes before authentication"),
            std::string::npos) << d.error();
  FrameWriter w;
  const Nonce n = nonce_of(1);
  Bytes hello;
  append(hello, w.hello({kProtocolVersion, "host-a", n, "flowbus test"}));
  append(hello, first);
  EXPECT_NE(decode_error(hello).find("frame 2: length 16777216 exceeds the limit of 16384 bytes before authentication"),
            std::string::npos);
  // The largest legitimate handshake frame fits: a Hello with a 4 KiB software string.
  Bytes largest;
  append(largest, w.hello({kProtocolVersion, "host-a", n, std::string(4096, 's')}));
  EXPECT_EQ(decode_error(largest), "");
}

TEST(WireTest, WrongIdentifierIsRefused) {
  FrameWriter w;
  Bytes bytes = handshake(w);
  std::memcpy(bytes.data() + 8, "FBW2", 4);
  EXPECT_EQ(decode_error(bytes), "frame 1: file identifier is not \"FBW1\": not a flowbus wire frame");
}

TEST(WireTest, OtherProtocolsAreNamed) {
  const Bytes tls = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03};
  EXPECT_EQ(decode_error(tls), "frame 1: peer speaks TLS; configure --tls-* on both sides");
  const Bytes alert = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28};
  EXPECT_EQ(decode_error(alert), "frame 1: peer speaks TLS; configure --tls-* on both sides");
  for (const char* http : {"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "POST /events HTTP/1.1\r\n", "HTTP/1.1 400 Bad\r\n"}) {
    EXPECT_EQ(decode_error(as_bytes(http)), "frame 1: peer speaks HTTP, not the flowbus wire protocol") << http;
  }
  // Recognised as soon as enough bytes are there, even byte by byte.
  FrameDecoder d;
  const Bytes get = as_bytes("GET /");
  d.feed({get.data(), 2});
  EXPECT_FALSE(d.next().has_value());
  d.feed({get.data() + 2, 3});
  EXPECT_THROW(d.next(), DecodeError);
}

TEST(WireTest, EntryOutsideTheBatchBytesIsRefused) {
  FrameWriter w;
  Bytes bytes = open_stream(w);
  flatbuffers::FlatBufferBuilder fbb;
  const Bytes data(10, 'x');
  const auto bytes_vec = fbb.CreateVector(data);
  const EventEntry entries[] = {EventEntry(1, 0, 0, 4, 4, 2, 0), EventEntry(2, 0, 8, 3, 0, 0, 0)};
  const auto entries_vec = fbb.CreateVectorOfStructs(entries, 2);
  fbb.FinishSizePrefixed(CreateFrame(fbb, Body::EventBatch, CreateEventBatch(fbb, 1, entries_vec, bytes_vec).Union()),
                         FrameIdentifier());
  append(bytes, {fbb.GetBufferPointer(), fbb.GetSize()});
  EXPECT_EQ(decode_error(bytes),
            "frame 4: EventBatch entry 1 (sequence 2): payload [8, 11) lies outside the batch's 10 bytes");

  // A subject past the end, with offsets near 2^32 that must not wrap.
  Bytes bytes2 = open_stream(w);
  fbb.Clear();
  const auto bytes_vec2 = fbb.CreateVector(data);
  const EventEntry wrap[] = {EventEntry(1, 0, 0, 1, 0xffffffffu, 2, 0)};
  const auto entries_vec2 = fbb.CreateVectorOfStructs(wrap, 1);
  fbb.FinishSizePrefixed(
      CreateFrame(fbb, Body::EventBatch, CreateEventBatch(fbb, 1, entries_vec2, bytes_vec2).Union()),
      FrameIdentifier());
  append(bytes2, {fbb.GetBufferPointer(), fbb.GetSize()});
  EXPECT_NE(decode_error(bytes2).find("subject [4294967295, 4294967297) lies outside"), std::string::npos);
}

TEST(WireTest, SequencesMustIncrease) {
  FrameWriter w;
  EventBatchWriter b(1024, 8);
  {
    Bytes bytes = open_stream(w);
    b.start(1);
    ASSERT_TRUE(b.add(5, 0, "", as_bytes("a")));
    ASSERT_TRUE(b.add(5, 0, "", as_bytes("b")));  // the writer leaves the order to its caller
    append(bytes, b.finish());
    EXPECT_EQ(decode_error(bytes),
              "frame 4: EventBatch entry 1 (sequence 5): sequences must increase, expected at least 6");
  }
  {  // across batches of the same stream
    Bytes bytes = open_stream(w);
    b.start(1);
    ASSERT_TRUE(b.add(5, 0, "", as_bytes("a")));
    append(bytes, b.finish());
    append(bytes, b.finish());
    EXPECT_EQ(decode_error(bytes), "frame 5: EventBatch entry 0 (sequence 5): sequences must increase, expected at "
                                   "least 6 (after the stream's earlier events)");
  }
  {  // below the stream's first sequence
    Bytes bytes = handshake(w);
    append(bytes, w.stream_open(stream_open_of(1, 100)));
    b.start(1);
    ASSERT_TRUE(b.add(99, 0, "", as_bytes("a")));
    append(bytes, b.finish());
    EXPECT_NE(decode_error(bytes).find("expected at least 100"), std::string::npos);
  }
  {  // a gap that goes backwards, and one that reaches into sent events
    Bytes bytes = open_stream(w);
    append(bytes, w.gap({1, 9, 9, ""}));
    EXPECT_EQ(decode_error(bytes), "frame 4: Gap [9, 9) of stream 1 is empty or reversed");
    Bytes bytes2 = open_stream(w);
    b.start(1);
    ASSERT_TRUE(b.add(5, 0, "", as_bytes("a")));
    append(bytes2, b.finish());
    append(bytes2, w.gap({1, 3, 9, ""}));
    EXPECT_EQ(decode_error(bytes2), "frame 5: Gap [3, 9) of stream 1 starts below 6, already sent or skipped");
  }
}

TEST(WireTest, StreamsMustBeAnnouncedOnce) {
  FrameWriter w;
  EventBatchWriter b(1024, 8);
  Bytes bytes = handshake(w);
  b.start(3);
  ASSERT_TRUE(b.add(1, 0, "", as_bytes("a")));
  append(bytes, b.finish());
  EXPECT_EQ(decode_error(bytes), "frame 3: EventBatch for stream 3, which no StreamOpen announced");

  Bytes twice = open_stream(w);
  append(twice, w.stream_open(stream_open_of(1, 1)));
  EXPECT_EQ(decode_error(twice), "frame 4: StreamOpen for stream 1, already open");

  Bytes gap = handshake(w);
  append(gap, w.gap({2, 1, 2, ""}));
  EXPECT_EQ(decode_error(gap), "frame 3: Gap for stream 2, which no StreamOpen announced");

  StreamOpenView bad = stream_open_of(1, 1);
  bad.origin_node = "host a";
  Bytes bad_origin = handshake(w);
  append(bad_origin, w.stream_open(bad));
  EXPECT_EQ(decode_error(bad_origin), "frame 3: StreamOpen.origin_node \"host a\" is not a valid node name");

  StreamOpenView no_topic = stream_open_of(1, 1);
  no_topic.topic = "";
  Bytes missing = handshake(w);
  append(missing, w.stream_open(no_topic));
  EXPECT_EQ(decode_error(missing), "frame 3: StreamOpen.topic is empty");
}

TEST(WireTest, FramesMustComeInOrder) {
  FrameWriter w;
  Bytes bytes;
  append(bytes, w.heartbeat({1}));
  EXPECT_EQ(decode_error(bytes), "frame 1: Heartbeat before Hello: the first frame must be Hello");

  const Nonce n = nonce_of(0);
  Bytes no_auth;
  append(no_auth, w.hello({kProtocolVersion, "a", n, ""}));
  append(no_auth, w.ack({1, 1}));
  EXPECT_EQ(decode_error(no_auth), "frame 2: Ack before Auth: Auth must follow Hello");

  Bytes second_hello = handshake(w);
  append(second_hello, w.hello({kProtocolVersion, "a", n, ""}));
  EXPECT_EQ(decode_error(second_hello), "frame 3: a second Hello");

  Bytes after_bye = handshake(w);
  append(after_bye, w.bye({"done"}));
  append(after_bye, w.heartbeat({1}));
  EXPECT_EQ(decode_error(after_bye), "frame 4: bytes after Refuse or Bye");

  // A peer may refuse before its Hello, e.g. when it is shutting down.
  Bytes refuse_first;
  append(refuse_first, w.refuse({RefuseCode::ShuttingDown, "stopping", 1, 0}));
  EXPECT_EQ(decode_error(refuse_first), "");
}

TEST(WireTest, BadNodeNamesAreRefused) {
  FrameWriter w;
  const Nonce n = nonce_of(0);
  const std::string longest(63, 'n');
  for (const std::string& name : {std::string("a b"), std::string("h\xc3\xa9llo"), std::string("a/b"),
                                  std::string(64, 'n')}) {
    Bytes bytes;
    append(bytes, w.hello({kProtocolVersion, name, n, ""}));
    EXPECT_NE(decode_error(bytes).find("Hello.node"), std::string::npos) << name;
  }
  Bytes empty;
  append(empty, w.hello({kProtocolVersion, "", n, ""}));
  EXPECT_EQ(decode_error(empty), "frame 1: Hello.node is empty");
  Bytes ok;
  append(ok, w.hello({kProtocolVersion, longest, n, ""}));
  append(ok, w.hello({kProtocolVersion, "A-z_0.9", n, ""}));
  EXPECT_EQ(decode_error(ok), "frame 2: a second Hello");  // both names passed
  EXPECT_TRUE(is_valid_node_name("A-z_0.9"));
  EXPECT_FALSE(is_valid_node_name("a:b"));
}

TEST(WireTest, NonceAndMacLengthsAreChecked) {
  FrameWriter w;
  const Bytes short_nonce(31, 1);
  Bytes bytes;
  append(bytes, w.hello({kProtocolVersion, "a", short_nonce, ""}));
  EXPECT_EQ(decode_error(bytes), "frame 1: Hello.nonce is 31 bytes, must be 32");
  Bytes no_nonce;
  append(no_nonce, w.hello({kProtocolVersion, "a", {}, ""}));
  EXPECT_EQ(decode_error(no_nonce), "frame 1: Hello.nonce is 0 bytes, must be 32");

  const Nonce n = nonce_of(0);
  const Bytes mac(16, 2);
  Bytes bad_mac;
  append(bad_mac, w.hello({kProtocolVersion, "a", n, ""}));
  append(bad_mac, w.auth({mac}));
  EXPECT_EQ(decode_error(bad_mac), "frame 2: Auth.mac is 16 bytes, must be 32 or empty");
}

TEST(WireTest, VersionMismatchNamesBothVersions) {
  const Nonce n = nonce_of(0);
  // The decoder passes any version: the Hello is frozen, so check_hello can answer.
  FrameWriter w;
  FrameDecoder d;
  d.feed(w.hello({kProtocolVersion + 1, "newer", n, "flowbus 9"}));
  const auto f = d.next();
  ASSERT_TRUE(f && std::holds_alternative<HelloView>(*f));
  const auto refusal = check_hello(std::get<HelloView>(*f));
  ASSERT_TRUE(refusal.has_value());
  EXPECT_EQ(refusal->code, RefuseCode::VersionMismatch);
  EXPECT_EQ(refusal->reason,
            "peer speaks flowbus wire protocol " + std::to_string(kProtocolVersion + 1) + ", this sidecar speaks " +
                std::to_string(kProtocolVersion) + ": run the same flowbus version on both hosts");
  EXPECT_EQ(refusal->local_version, kProtocolVersion);
  EXPECT_EQ(refusal->remote_version, kProtocolVersion + 1);
  // And the refusal travels.
  FrameDecoder peer;
  peer.feed(w.refuse(refusal->view()));
  EXPECT_EQ(describe(*peer.next()), "Refuse VersionMismatch " + refusal->reason + " " + std::to_string(kProtocolVersion) + " " +
                                        std::to_string(kProtocolVersion + 1));

  EXPECT_FALSE(check_hello({kProtocolVersion, "a", n, ""}).has_value());
  const auto self = check_hello({kProtocolVersion, "me", n, ""}, kProtocolVersion, "me");
  ASSERT_TRUE(self.has_value());
  EXPECT_EQ(self->code, RefuseCode::Protocol);
  EXPECT_NE(self->reason.find("own node name \"me\""), std::string::npos);
}

TEST(WireTest, TokenMacProvesTheToken) {
  const Nonce mine = nonce_of(1);
  const Nonce other = nonce_of(2);
  // The peer "b" answers this side's nonce.
  const Mac mac = compute_auth_mac("s3cret", mine, "b");
  EXPECT_TRUE(verify_auth_mac("s3cret", mine, "b", mac));
  EXPECT_FALSE(verify_auth_mac("s3creT", mine, "b", mac));   // wrong token
  EXPECT_FALSE(verify_auth_mac("s3cret", other, "b", mac));  // wrong nonce: a replay from another connection
  EXPECT_FALSE(verify_auth_mac("s3cret", mine, "c", mac));   // another node's name
  EXPECT_FALSE(verify_auth_mac("s3cret", mine, "b", std::span<const uint8_t>(mac).first(31)));
  EXPECT_NE(compute_auth_mac("s3cret", mine, "b"), compute_auth_mac("s3cret", other, "b"));

  // The known HMAC-SHA256 of this input, so both ends agree with any other implementation.
  const Nonce zeros{};
  const Mac fixed = compute_auth_mac("token", zeros, "node");
  char hex[65];
  for (size_t i = 0; i < fixed.size(); ++i) std::snprintf(hex + 2 * i, 3, "%02x", fixed[i]);
  EXPECT_EQ(std::string(hex, 64), "713ecaf784390960ec0d51616edfea1564ff0b7605ce1be06fae8baf6d2f696d");  // Python hmac

  EXPECT_FALSE(check_auth("s3cret", mine, "b", {mac}).has_value());
  EXPECT_EQ(check_auth("s3cret", mine, "b", {}).value().code, RefuseCode::TokenRequired);
  EXPECT_EQ(check_auth("other", mine, "b", {mac}).value().code, RefuseCode::BadToken);
  EXPECT_FALSE(check_auth("", mine, "b", {}).has_value());  // no token here: nothing to check
  const Nonce a = make_nonce(), b = make_nonce();
  EXPECT_NE(a, b);
}

TEST(WireTest, DecoderStaysFailed) {
  FrameWriter w;
  Bytes bytes;
  append(bytes, w.heartbeat({1}));
  FrameDecoder d;
  d.feed(bytes);
  std::string first;
  try {
    d.next();
    FAIL() << "no DecodeError";
  } catch (const DecodeError& e) {
    first = e.what();
  }
  d.feed(handshake(w));  // ignored now
  for (int i = 0; i < 3; ++i) {
    try {
      d.next();
      FAIL() << "no DecodeError";
    } catch (const DecodeError& e) {
      EXPECT_EQ(e.what(), first);
    }
  }
  EXPECT_TRUE(d.failed());
  EXPECT_EQ(d.error(), first);
  EXPECT_EQ(d.frames(), 0u);
}

TEST(WireTest, BatchWriterRespectsItsBounds) {
  EventBatchWriter b(100, 3);
  b.start(9);
  EXPECT_TRUE(b.empty());
  EXPECT_THROW(b.finish(), std::logic_error);
  const Bytes sixty(60, 'p');
  EXPECT_FALSE(b.add(1, 0, "", Bytes(101, 'x')));  // alone larger than max_bytes
  EXPECT_TRUE(b.add(1, 0, "abc", sixty));
  EXPECT_FALSE(b.add(2, 0, "", sixty));  // 63 + 60 > 100
  EXPECT_TRUE(b.add(2, 0, "", Bytes(37, 'q')));
  EXPECT_EQ(b.bytes(), 100u);
  b.start(9);
  EXPECT_TRUE(b.add(1, 0, "", {}));
  EXPECT_TRUE(b.add(2, 0, "", {}));
  EXPECT_TRUE(b.add(3, 0, "", {}));
  EXPECT_FALSE(b.add(4, 0, "", {}));  // max_events
  EXPECT_EQ(b.size(), 3u);
  EXPECT_THROW(EventBatchWriter(kDefaultMaxFrameBytes, 1000), std::invalid_argument);
  EXPECT_THROW(EventBatchWriter(1024, 0), std::invalid_argument);
  EXPECT_NO_THROW(EventBatchWriter(16u << 20, 1024));  // a 16 MiB event fits the default frame limit
}

TEST(WireTest, LargestBatchDecodesUnderDefaultLimits) {
  EventBatchWriter b(16u << 20, 1024);
  FrameWriter w;
  Bytes bytes = open_stream(w);
  b.start(1);
  const Bytes big((16u << 20) - 1024, 'z');
  ASSERT_TRUE(b.add(1, 0, std::string(1024, 's'), big));
  append(bytes, b.finish());
  FrameDecoder d;
  d.feed(bytes);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(d.next().has_value());
  const auto f = d.next();
  ASSERT_TRUE(f && std::holds_alternative<EventBatchView>(*f));
  const auto& batch = std::get<EventBatchView>(*f);
  ASSERT_EQ(batch.entries.size(), 1u);
  EXPECT_EQ(batch.payload(batch.entries[0]).size(), big.size());
  EXPECT_EQ(batch.subject(batch.entries[0]), std::string(1024, 's'));
}

// ---- what the wire_frames fuzzer found; each names its input in fuzz/corpus/wire_frames/

std::vector<uint8_t> read_corpus(const std::string& name) {
  std::ifstream in(std::string(FLOWBUS_SOURCE_DIR) + "/fuzz/corpus/wire_frames/" + name, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// crash-nul-in-node-name: a node name with a NUL byte went into the reason
// raw, so what() (a C string) was cut short and differed from error().
TEST(WireTest, PeerBytesInReasonsAreEscaped) {
  const Bytes seed = read_corpus("crash-nul-in-node-name");
  ASSERT_GT(seed.size(), 1u);
  const std::string reason = decode_error(Bytes(seed.begin() + 1, seed.end()));  // byte 0 is the fuzzer's chunking
  EXPECT_NE(reason.find("Hello.node \"\\x00"), std::string::npos) << reason;
  EXPECT_EQ(reason.find('\0'), std::string::npos);

  FrameWriter w;
  const Nonce n = nonce_of(0);
  Bytes bytes;
  append(bytes, w.hello({kProtocolVersion, std::string_view("a\0b\n\"", 5), n, ""}));
  EXPECT_EQ(decode_error(bytes),
            "frame 1: Hello.node \"a\\x00b\\x0a\\x22\" is not 1 to 63 characters of A-Z a-z 0-9 . _ -");
}

// crash-misaligned-resume: the Verifier does not check that a vector of
// 8-byte structs is 8-aligned, so Resume (and EventEntry) could be read
// from a misaligned address (UBSan).
TEST(WireTest, MisalignedStructVectorsAreRefused) {
  const Bytes seed = read_corpus("crash-misaligned-resume");
  ASSERT_GT(seed.size(), 1u);
  EXPECT_NE(decode_error(Bytes(seed.begin() + 1, seed.end())).find("Subscribe.resume is not 8-byte aligned"),
            std::string::npos);

  // A batch whose entries vector is built as raw bytes, 4 bytes off or not.
  int refused = 0;
  for (int pad = 0; pad < 2; ++pad) {
    FrameWriter w;
    Bytes bytes = open_stream(w);
    flatbuffers::FlatBufferBuilder fbb;
    const Bytes data(8, 'x');
    const auto bytes_vec = fbb.CreateVector(data);
    const EventEntry entry(1, 2, 0, 8, 0, 0, 0);
    fbb.StartVector(sizeof entry, 1);
    fbb.PushBytes(reinterpret_cast<const uint8_t*>(&entry), sizeof entry);
    const flatbuffers::Offset<flatbuffers::Vector<const EventEntry*>> entries_vec(fbb.EndVector(1));
    if (pad) fbb.PushElement<uint32_t>(0);  // 4 bytes between the entries and the frame's start
    fbb.FinishSizePrefixed(
        CreateFrame(fbb, Body::EventBatch, CreateEventBatch(fbb, 1, entries_vec, bytes_vec).Union()),
        FrameIdentifier());
    append(bytes, {fbb.GetBufferPointer(), fbb.GetSize()});
    const std::string reason = decode_error(bytes);
    if (reason.empty()) continue;
    EXPECT_EQ(reason, "frame 4: EventBatch.entries is not 8-byte aligned in the frame");
    ++refused;
  }
  EXPECT_EQ(refused, 1);  // exactly one of the two layouts is misaligned
}

TEST(WireTest, ADroppedLastEventLeavesNoTraceInTheBatch) {
  FrameWriter w;
  Bytes bytes = open_stream(w);
  EventBatchWriter batch(4096, 16);
  batch.start(1);
  const Bytes first = as_bytes("first"), torn = as_bytes("torn payload");
  ASSERT_TRUE(batch.add(1, 10, "s1", first));
  ASSERT_TRUE(batch.add(2, 20, "a longer subject", torn));
  batch.drop_last();
  EXPECT_EQ(batch.size(), 1u);
  EXPECT_EQ(batch.bytes(), first.size() + 2);
  ASSERT_TRUE(batch.add(3, 30, "s3", torn));  // the next event follows, as after a gap
  append(bytes, batch.finish());
  FrameDecoder d;
  d.feed(bytes);
  std::optional<FrameView> f;
  while ((f = d.next()) && !std::holds_alternative<EventBatchView>(*f)) {
  }
  ASSERT_TRUE(f.has_value());
  const auto& b = std::get<EventBatchView>(*f);
  ASSERT_EQ(b.entries.size(), 2u);
  EXPECT_EQ(b.entries[0].sequence(), 1u);
  EXPECT_EQ(b.subject(b.entries[0]), "s1");
  EXPECT_TRUE(std::equal(b.payload(b.entries[0]).begin(), b.payload(b.entries[0]).end(), first.begin(), first.end()));
  EXPECT_EQ(b.entries[1].sequence(), 3u);
  EXPECT_EQ(b.subject(b.entries[1]), "s3");
  EXPECT_TRUE(std::equal(b.payload(b.entries[1]).begin(), b.payload(b.entries[1]).end(), torn.begin(), torn.end()));
  EXPECT_EQ(b.bytes.size(), first.size() + torn.size() + 4);
}
