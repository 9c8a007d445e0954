// The sidecar's resource bounds against hostile clients, end to end: a real
// `flowbus sidecar` process, real sockets on loopback, its memory read from
// /proc/PID/status while a good peer keeps mirroring.
#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>

#include <fstream>
#include <set>

#include "flowbus/inspect.hpp"
#include "sidecar_pair.hpp"

using namespace flowbus;
using namespace flowbus::testing;
using namespace std::chrono_literals;

namespace {

/// VmRSS of a process, in bytes (0 if it is gone).
uint64_t rss_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;  // "VmRSS:   23456 kB"
  return 0;
}

/// A raw client socket on loopback, non-blocking once connected.
int connect_raw(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

/// Whether the other side closed `fd` (reads and discards what it sent).
bool closed_by_sidecar(int fd) {
  uint8_t buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) return true;
    if (n < 0) return errno != EAGAIN && errno != EINTR;
  }
}

/// Counts what arrives on B in order, on its own thread, so that the test
/// can see the good peer mirror while the hostile clients are at it.
struct Reader {
  Subscriber sub;
  std::atomic<uint64_t> in_order{0};
  std::atomic<uint64_t> problems{0};
  std::atomic<bool> stop{false};
  std::thread thread;
  explicit Reader(Subscriber s) : sub(std::move(s)) {
    thread = std::thread([this] {
      Event e;
      while (!stop) {
        const ReadResult r = sub.read(e);
        if (r.status == ReadStatus::Empty) {
          sub.wait(10ms);
          continue;
        }
        if (r.status != ReadStatus::Ok || e.sequence() != in_order || seq_field(e) != in_order) ++problems;
        else ++in_order;
        (void)sub.release(e);
      }
    });
  }
  ~Reader() {
    stop = true;
    thread.join();
  }
};

/// Publishes sensor readings seq = first.. on A at about 2,000 a second until stopped.
struct PacedPublisher {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> published;
  std::thread thread;
  PacedPublisher(Bus& bus, uint64_t first) : published(first) {
    thread = std::thread([this, &bus] {
      Publisher pub = bus.publisher("sensor.temp", {"line1"});
      flatbuffers::FlatBufferBuilder fbb;
      while (!stop) {
        for (int i = 0; i < 20; ++i) {
          build_reading(fbb, published, double(published % 1000));
          if (pub.publish(fbb, 30s) != PublishStatus::Ok) return;
          ++published;
        }
        std::this_thread::sleep_for(10ms);
      }
    });
  }
  uint64_t finish() {
    stop = true;
    thread.join();
    return published;
  }
};

std::string token_file() {
  const std::string path = ::testing::TempDir() + "/limits-token";
  std::ofstream(path) << "0123456789abcdef0123456789abcdef\n";
  return path;
}

}  // namespace

// Each hostile client sends a 16 MiB length prefix and 16 MiB of body, then
// one byte every 2 s, as in the issue: before the fix the sidecar buffered
// each body (~17 MiB per connection; 12 took it to 1 GB) although none had
// authenticated. Now the prefix alone closes the connection.
TEST(SidecarLimitsTest, AHundredClientsSendingHugeFramesBeforeAuthenticationLeaveTheSidecarSmallAndTheGoodPeerMirroring) {
  constexpr int kClients = 100;
  // VmRSS may grow this much over its figure before the flood. Under ASan,
  // freed memory waits in its quarantine and allocator caches before reuse,
  // so RSS measures ASan, not the sidecar: the bound is checked in the
  // Release run only (`make test`); the rest of the test runs everywhere.
#if defined(__SANITIZE_ADDRESS__)
  constexpr uint64_t kGrowthBound = UINT64_MAX / 2;
#else
  constexpr uint64_t kGrowthBound = 48ull << 20;
#endif
  const std::string token = token_file();
  Pair p("hostile-frames");
  p.start_a({"--token-file", token});
  p.start_b({"--token-file", token});
  Reader on_b(subscribe_earliest(p.bus_b, "sensor.>"));
  {
    std::atomic<uint64_t> first{0};
    publish_readings(p.bus_a, 0, 1, first).join();
  }
  const auto primed = std::chrono::steady_clock::now() + 30s;
  while (on_b.in_order < 1 && std::chrono::steady_clock::now() < primed) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(p.side_a->wait_for_log("mirroring (handshake complete", 10s)) << p.logs();
  PacedPublisher publisher(p.bus_a, 1);
  std::this_thread::sleep_for(300ms);
  const uint64_t rss_before = rss_bytes(p.side_a->pid());
  ASSERT_GT(rss_before, 0u);

  // For 3 s, 100 clients at all times: each one the sidecar closes is
  // replaced by a new one.
  const uint64_t arrived_before = on_b.in_order;
  constexpr uint64_t kFrame = 4 + (16ull << 20);
  std::vector<uint8_t> body(64 * 1024, 0x5a);
  const uint32_t length = 16u << 20;  // within the limit for authenticated peers (16 MiB + 64 KiB)
  std::memcpy(body.data(), &length, sizeof length);  // a client's first write carries the prefix
  struct Client {
    int fd = -1;
    uint64_t sent = 0;
    std::chrono::steady_clock::time_point last_byte{};
  };
  std::vector<Client> clients(kClients);
  uint64_t connections = 0, closed_by_it = 0;
  uint64_t rss_max = rss_before;
  const auto flood_start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - flood_start < 3s) {
    const auto now = std::chrono::steady_clock::now();
    for (Client& c : clients) {
      if (c.fd >= 0 && closed_by_sidecar(c.fd)) {
        ::close(c.fd);
        c = Client{};
        ++closed_by_it;
      }
      if (c.fd < 0) {
        c.fd = connect_raw(p.port);
        ++connections;
        continue;
      }
      if (c.sent < kFrame) {  // the body, as fast as the sidecar takes it
        const size_t skip = c.sent == 0 ? 0 : 4;  // the prefix only in the first write
        const size_t n = size_t(std::min<uint64_t>(body.size() - skip, kFrame - c.sent));
        const ssize_t w = ::send(c.fd, body.data() + skip, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) c.sent += uint64_t(w);
        c.last_byte = now;
      } else if (now - c.last_byte > 2s) {  // then one byte every 2 s
        (void)::send(c.fd, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        c.last_byte = now;
      }
    }
    rss_max = std::max(rss_max, rss_bytes(p.side_a->pid()));
    if (rss_max > rss_before + kGrowthBound) break;  // failed: no need to take more of the machine's memory
    std::this_thread::sleep_for(1ms);
  }
  const uint64_t arrived_during = on_b.in_order - arrived_before;
  for (Client& c : clients) ::close(c.fd);
  const uint64_t published = publisher.finish();

  std::printf("VmRSS of the sidecar: %.1f MiB before %d hostile clients, at most %.1f MiB during 3 s of them (bound: +%llu MiB); "
              "%llu connections, %llu closed by the sidecar; %llu events mirrored meanwhile\n",
              double(rss_before) / (1 << 20), kClients, double(rss_max) / (1 << 20),
              static_cast<unsigned long long>(kGrowthBound >> 20), static_cast<unsigned long long>(connections),
              static_cast<unsigned long long>(closed_by_it), static_cast<unsigned long long>(arrived_during));
  EXPECT_LE(rss_max, rss_before + kGrowthBound) << p.logs();
  EXPECT_GE(closed_by_it, uint64_t(kClients)) << "each closed at once, and the new ones too";
  EXPECT_GT(arrived_during, 0u) << "the good peer must keep mirroring during the flood";
  EXPECT_TRUE(p.side_a->wait_for_log("before authentication", 1s)) << p.logs();
  EXPECT_NE(p.side_a->log().find("peer at 127.0.0.1:"), std::string::npos) << "the log names the peer";
  const auto drained = std::chrono::steady_clock::now() + 30s;
  while (on_b.in_order < published && std::chrono::steady_clock::now() < drained) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(on_b.in_order.load(), published) << p.logs();
  EXPECT_EQ(on_b.problems.load(), 0u);
}

// Clients that trickle a Hello (one byte every 100 ms) hold a handshake slot
// each: more than --max-pending of them are closed at once, the others at
// the handshake deadline. Before the fix each trickled byte kept its
// connection alive for good.
TEST(SidecarLimitsTest, ClientsTricklingTheirHandshakeAreBoundedInNumberAndClosedAtTheDeadline) {
  constexpr int kClients = 40;
  Pair p("hostile-trickle");
  p.start_a({"--max-pending", "8", "--handshake-timeout-ms", "1000"});
  p.start_b();
  Reader on_b(subscribe_earliest(p.bus_b, "sensor.>"));
  {
    std::atomic<uint64_t> first{0};
    publish_readings(p.bus_a, 0, 1, first).join();
  }
  ASSERT_TRUE(p.side_a->wait_for_log("mirroring (handshake complete", 10s)) << p.logs();
  PacedPublisher publisher(p.bus_a, 1);
  wire::FrameWriter writer;  // hello() is a view into the writer's buffer: the writer must outlive the copy
  const auto hello = writer.hello({wire::kProtocolVersion, "slow", wire::make_nonce(), "slow"});
  const std::vector<uint8_t> bytes(hello.begin(), hello.end());
  std::vector<int> fds;
  for (int i = 0; i < kClients; ++i) fds.push_back(connect_raw(p.port));
  const auto start = std::chrono::steady_clock::now();
  std::vector<bool> closed(fds.size(), false);
  size_t at = 0;
  while (std::count(closed.begin(), closed.end(), true) < kClients && std::chrono::steady_clock::now() - start < 4s) {
    for (size_t i = 0; i < fds.size(); ++i) {
      if (closed[i] || fds[i] < 0) {
        closed[i] = true;
        continue;
      }
      if (closed_by_sidecar(fds[i])) closed[i] = true;
      else if (at < bytes.size()) (void)::send(fds[i], bytes.data() + at, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    ++at;
    std::this_thread::sleep_for(100ms);
  }
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto n_closed = std::count(closed.begin(), closed.end(), true);
  for (int fd : fds) ::close(fd);
  std::printf("%lld of %d trickling clients closed within %.1f s\n", static_cast<long long>(n_closed), kClients, took);
  EXPECT_EQ(n_closed, kClients) << p.logs();
  EXPECT_LT(took, 3.0) << "a 1 s handshake deadline";
  EXPECT_TRUE(p.side_a->wait_for_log("in their handshake already (--max-pending)", 1s)) << p.logs();
  EXPECT_TRUE(p.side_a->wait_for_log("no handshake within 1000 ms", 1s)) << p.logs();
  const uint64_t published = publisher.finish();
  const auto drained = std::chrono::steady_clock::now() + 30s;
  while (on_b.in_order < published && std::chrono::steady_clock::now() < drained) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(on_b.in_order.load(), published) << p.logs();
}

// After authentication a peer may send large frames, but it must keep them
// coming: one that starts a 1 MiB frame and then sends a byte every 300 ms
// is dropped after --peer-timeout-ms. Before the fix any byte counted as
// life, so it held its buffered bytes for as long as it liked.
TEST(SidecarLimitsTest, AnAuthenticatedPeerTricklingAFrameIsDroppedAfterThePeerTimeout) {
  Pair p("hostile-auth-trickle");
  p.start_a({"--peer-timeout-ms", "1500"});
  HandPeer peer(p.port);
  ASSERT_EQ(peer.handshake("node-x"), "node-a") << p.logs();
  peer.send(peer.writer().subscribe({}, {}));
  std::vector<uint8_t> start(4 + 100 * 1024, 0);
  const uint32_t length = 1u << 20;
  std::memcpy(start.data(), &length, sizeof length);
  peer.send(start);
  const auto begin = std::chrono::steady_clock::now();
  bool dropped = false;
  while (!dropped && std::chrono::steady_clock::now() - begin < 6s) {
    peer.send(std::string("x"));
    dropped = peer.closed_by_peer(300ms);
  }
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  std::printf("the trickling peer was %s after %.1f s\n", dropped ? "dropped" : "still connected", took);
  EXPECT_TRUE(dropped) << p.logs();
  EXPECT_TRUE(p.side_a->wait_for_log("it trickles", 1s)) << p.logs();
}

namespace {

/// The descriptor number the process's next open() or accept() gets: the
/// lowest one not open (RLIMIT_NOFILE bounds the number, not the count).
int lowest_free_fd(pid_t pid) {
  std::set<int> open;
  if (DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str())) {
    while (const dirent* entry = ::readdir(d))
      if (entry->d_name[0] != '.') open.insert(std::atoi(entry->d_name));
    ::closedir(d);
  }
  int fd = 0;
  while (open.count(fd) != 0) ++fd;
  return fd;
}

/// True while `pid` runs (not gone, not a zombie waiting to be reaped).
bool running(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const size_t close = line.rfind(')');  // "PID (comm) STATE ..."
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

}  // namespace

// Before the fix the listening sidecar died when a peer authenticated while it
// had no file descriptor left: reading its bus for the peer threw, uncaught.
TEST(SidecarLimitsTest, ASidecarOutOfFileDescriptorsDropsTheConnectionAndGoesOnOnceItHasThemAgain) {
#ifdef __SANITIZE_ADDRESS__
  // The asan preset has UBSan too, whose vptr check opens a pipe to probe
  // memory: with no descriptor left it reports a false error and stops the
  // sidecar. The Release run checks this.
  GTEST_SKIP() << "UBSan needs descriptors of its own";
#endif
  Pair p("limits-nofile");
  p.bus_a.create_topic(sensor_topic("private.temp"));  // a ring more for the sidecar to open when it reads its bus
  {
    Publisher pub = p.bus_a.publisher("private.temp", {"line1"});
    flatbuffers::FlatBufferBuilder fbb;
    build_reading(fbb, 0);
    ASSERT_EQ(pub.publish(fbb, 1s), PublishStatus::Ok);
  }
  p.start_a();
  ASSERT_TRUE(p.side_a->wait_for_log("listening on port", 10s)) << p.logs();
  const pid_t a = p.side_a->pid();
  rlimit before{};
  ASSERT_EQ(::prlimit(a, RLIMIT_NOFILE, nullptr, &before), 0);
  // Room for the peer's connection and nothing more.
  const rlimit tight{rlim_t(lowest_free_fd(a)) + 1, before.rlim_max};
  ASSERT_EQ(::prlimit(a, RLIMIT_NOFILE, &tight, nullptr), 0);
  p.start_b();
  EXPECT_TRUE(p.side_a->wait_for_log("this sidecar failed while handling what it sent", 15s)) << p.logs();
  EXPECT_NE(p.side_a->log().find("Too many open files"), std::string::npos) << p.logs();
  std::this_thread::sleep_for(200ms);
  EXPECT_TRUE(running(a)) << "the sidecar must still run\n" << p.logs();

  ASSERT_EQ(::prlimit(a, RLIMIT_NOFILE, &before, nullptr), 0);
  Subscriber on_b = subscribe_earliest(p.bus_b, "sensor.>");
  std::atomic<uint64_t> published{0};
  prime(p, on_b, published);
  publish_readings(p.bus_a, 1, 99, published).join();
  const Collected got = collect(on_b, 99, 30s, 1);
  EXPECT_EQ(got.in_order, 99u) << got.first_problem << "\n" << p.logs();
}

namespace {

size_t readers_of(const std::string& bus, const std::string& topic) {
  for (const RingSnapshot& r : inspect_bus(bus).rings)
    if (r.topic == topic) return r.cursors.size();
  return 0;
}

}  // namespace

// Before the fix every authenticated peer (any node name) got an export
// reader on each ring, kept through its resume window: enough of them took
// all 64 reader slots, and local subscribers got NoSpace (layout 4; since
// layout 5 they would read unprotected).
TEST(SidecarLimitsTest, PeersBeyondMaxPeersTakeTheLongestParkedPlaceOrAreRefused) {
  Pair p("limits-peers");
  {
    Publisher pub = p.bus_a.publisher("sensor.temp", {"line1"});
    flatbuffers::FlatBufferBuilder fbb;
    build_reading(fbb, 0);
    ASSERT_EQ(pub.publish(fbb, 1s), PublishStatus::Ok);
  }
  p.start_a({"--max-peers", "2"});
  const auto importer = [&](const std::string& node) {
    auto peer = std::make_unique<HandPeer>(p.port);
    EXPECT_EQ(peer->handshake(node), "node-a");
    const std::vector<std::string> patterns{"sensor.>"};
    peer->send(peer->writer().subscribe(patterns, {}));
    return peer;
  };
  const auto wait_for_readers = [&](size_t n) {
    for (int i = 0; i < 500 && readers_of(p.a.name, "sensor.temp") != n; ++i) std::this_thread::sleep_for(10ms);
    return readers_of(p.a.name, "sensor.temp");
  };
  auto one = importer("node-1");
  auto two = importer("node-2");
  ASSERT_EQ(wait_for_readers(2), 2u) << p.logs();

  auto three = importer("node-3");
  const std::optional<wire::RefuseView> refusal = next_refusal(*three);
  ASSERT_TRUE(refusal) << p.logs();
  EXPECT_EQ(refusal->code, wire::RefuseCode::LocalFailure);
  EXPECT_NE(std::string(refusal->reason).find("exports to 2 peers already (--max-peers)"), std::string::npos)
      << refusal->reason;
  EXPECT_EQ(readers_of(p.a.name, "sensor.temp"), 2u);

  one.reset();  // node-1 goes away: parked, its reader kept for the resume window
  ASSERT_TRUE(p.side_a->wait_for_log("peer node-1 (", 5s));
  ASSERT_TRUE(p.side_a->wait_for_log("connection closed", 5s)) << p.logs();
  auto again = importer("node-3");
  EXPECT_TRUE(p.side_a->wait_for_log(
      "peer node-1 is away: its read positions are released to make room for node-3 (--max-peers 2)", 5s))
      << p.logs();
  EXPECT_EQ(wait_for_readers(2), 2u) << p.logs();
  Subscriber local = p.bus_a.subscribe("sensor.temp");  // a local reader still gets a slot
  EXPECT_EQ(readers_of(p.a.name, "sensor.temp"), 3u);
}

// Before the fix a peer could announce streams without end, each kept in the
// importer's memory (a refused one too).
TEST(SidecarLimitsTest, AConnectionMayOpenAtMost512StreamsAndTheRestAreRefusedUnkept) {
  const uint16_t port = free_port();
  ScopedBusName bus("limits-streams");
  const std::string log = ::testing::TempDir() + "/limits-streams.log";
  std::remove(log.c_str());
  SidecarProcess listener(log, {"--bus", bus.name, "--node", "node-c", "--listen", "127.0.0.1:" + std::to_string(port),
                                "--import", "sensor.>"});
  HandPeer peer(port);
  ASSERT_EQ(peer.handshake("node-x"), "node-c");
  peer.send(peer.writer().subscribe({}, {}));
  const std::vector<uint8_t> schema = sensor_topic("x").schema;
  // Announced as the listener's own events come back round a loop: kept
  // (and discarded) without creating a topic or a ring.
  for (uint32_t stream = 1; stream <= 600; ++stream)
    peer.send(
        peer.writer().stream_open({stream, "sensor.temp", "examples.SensorReading", "fnv1a64:0", schema,
                                   wire::TopicPolicy::Block, stream, "line1", "flowbus://c/b/line1", "node-c", 0}));
  std::vector<uint32_t> refused;
  for (;;) {
    std::optional<wire::FrameView> f = peer.next_frame(2s);
    if (!f) break;
    if (const auto* r = std::get_if<wire::StreamRefuseView>(&*f)) {
      EXPECT_EQ(r->code, wire::RefuseCode::LocalFailure);
      EXPECT_NE(std::string(r->reason).find("at most 512 streams"), std::string::npos) << r->reason;
      refused.push_back(r->stream);
    }
  }
  ASSERT_EQ(refused.size(), 600u - 512u) << listener.log();
  EXPECT_EQ(refused.front(), 513u);
  EXPECT_TRUE(listener.wait_for_log("and any further stream: a connection may open at most 512 streams", 1s))
      << listener.log();
}
