// `flowbus inspect --prometheus` and `flowbus exporter` run as the real
// binary, checked by the real tools: Debian's promtool lints the page, and
// Debian's prometheus server scrapes the exporter and answers a query.
// Plus the exporter against bad input and hostile HTTP clients.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "cli_helpers.hpp"

using namespace flowbus;
using namespace flowbus::testing;

namespace {

namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;

struct Reply {
  int status = 0;  ///< 0: no answer (connection failed or closed)
  std::string body;
};

/// One HTTP/1.1 request to 127.0.0.1:port through Beast's synchronous client.
Reply http_request(uint16_t port, const std::string& target, http::verb verb = http::verb::get) {
  try {
    boost::asio::io_context io;
    boost::beast::tcp_stream stream(io);
    stream.expires_after(std::chrono::seconds(10));
    stream.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port));
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, "127.0.0.1");
    http::write(stream, req);
    boost::beast::flat_buffer buffer;
    http::response_parser<http::string_body> res;
    res.body_limit(64 * 1024 * 1024);
    if (verb == http::verb::head) res.skip(true);  // a HEAD answer has a length but no body
    http::read(stream, buffer, res);
    return {int(res.get().result_int()), res.get().body()};
  } catch (const std::exception&) {
    return {};
  }
}

/// A raw TCP connection to 127.0.0.1:port, for clients that misbehave.
int raw_connect(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

/// Reads until the peer closes or `timeout` passes; what came, and whether it closed.
std::pair<std::string, bool> read_until_closed(int fd, std::chrono::milliseconds timeout) {
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return {got, false};
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, int(left.count())) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return {got, true};
    got.append(buf, size_t(n));
  }
}

/// A port free on loopback right now (bound to 0, then let go).
uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

/// A running `flowbus exporter` on a port of its choosing (port 0), read from its first line.
struct Exporter {
  std::unique_ptr<ChildProcess> child;
  uint16_t port = 0;
  explicit Exporter(std::vector<std::string> args) {
    std::vector<std::string> argv{kCli, "exporter", "--listen", "127.0.0.1:0"};
    argv.insert(argv.end(), args.begin(), args.end());
    child = std::make_unique<ChildProcess>(argv, ChildProcess::Options{.pipe_stdin = false, .capture_stderr = true});
    const auto line = child->read_line(std::chrono::seconds(15));
    const std::regex serving(R"(serving http://127\.0\.0\.1:(\d+)/metrics)");
    std::smatch m;
    if (line && std::regex_search(*line, m, serving)) port = uint16_t(std::stoi(m[1]));
    EXPECT_NE(port, 0) << "first line: " << line.value_or("<none>");
  }
  /// SIGTERM, and what it said; it must end cleanly.
  Outcome stop() {
    child->signal(SIGTERM);
    Outcome o = child->communicate(std::chrono::seconds(10));
    EXPECT_TRUE(o.finished);
    EXPECT_EQ(o.exit_code, 0) << describe(o);
    return o;
  }
};

/// The value of the first sample of `series` (metric name and labels as written) in a page.
std::optional<double> sample(const std::string& page, const std::string& series) {
  const size_t at = page.find("\n" + series + " ");
  if (at == std::string::npos) return std::nullopt;
  return std::stod(page.substr(at + series.size() + 2));
}

/// A directory removed with all it holds when the test ends, whatever happened.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char tmpl[] = "/tmp/flowbus-metrics-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

/// `flowbus pub` publishing orders forever at `rate`, as "name".
std::unique_ptr<ChildProcess> endless_publisher(const std::string& bus, const std::string& name, int rate) {
  return std::make_unique<ChildProcess>(
      std::vector<std::string>{kCli, "pub", bus, "orders.created", "--json", kOrderJson, "--count", "100000000",
                               "--rate", std::to_string(rate), "--name", name, "--quiet"},
      ChildProcess::Options{.pipe_stdin = false, .capture_stderr = true});
}

/// Waits until `probe` holds, polling every 50 ms, at most `timeout`.
bool eventually(const std::function<bool()>& probe, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (probe()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return probe();
}

}  // namespace

// A bus with a live publisher, one that exited, one killed -9, a subscriber
// that reads everything and one that lags: promtool passes the page, and the
// page says what the test knows.
TEST(MetricsCliTest, InspectPrometheusPassesPromtoolAndShowsLagAndADeadWriter) {
  OrdersBus bus;
  ASSERT_EQ(bus.pub(kOrderJson, {"--count", "5", "--name", "done"}).exit_code, 0);
  Bus handle = Bus::open(bus.name.name);
  Subscriber lagging = handle.subscribe("orders.>");  // never reads
  Publisher live = handle.publisher("orders.created", {.name = "live"});
  auto killed = endless_publisher(bus.name.name, "killed", 1000);
  ASSERT_TRUE(eventually(
      [&] {
        const Outcome o = flowbus_cli({"inspect", bus.name.name, "--prometheus"});
        const auto n = sample(o.out, R"(flowbus_ring_events_total{bus=")" + bus.name.name +
                                         R"(",topic="orders.created",publisher="killed"})");
        return n && *n >= 20;
      },
      std::chrono::seconds(15)));
  killed->kill_and_reap();
  ASSERT_EQ(bus.pub(kOrderJson, {"--count", "7", "--name", "done"}).exit_code, 0);

  const Outcome o = flowbus_cli({"inspect", bus.name.name, "--prometheus"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  TempDir dir;
  std::ofstream(dir.path / "page.prom") << o.out;
  ChildProcess promtool({"/bin/sh", "-c", "promtool check metrics < " + (dir.path / "page.prom").string()},
                        {.pipe_stdin = false, .capture_stderr = true});
  const Outcome lint = promtool.communicate(std::chrono::seconds(30));
  EXPECT_EQ(lint.exit_code, 0) << describe(lint) << "\npage:\n" << o.out;
  EXPECT_EQ(lint.out + lint.err, "") << "promtool found problems";

  const std::string b = bus.name.name;
  const std::string done = R"({bus=")" + b + R"(",topic="orders.created",publisher="done"})";
  EXPECT_EQ(sample(o.out, "flowbus_ring_events_total" + done), 12.0) << o.out;
  EXPECT_EQ(sample(o.out, "flowbus_ring_writer_alive" + done), 0.0);
  EXPECT_EQ(sample(o.out, R"(flowbus_ring_writer_alive{bus=")" + b + R"(",topic="orders.created",publisher="killed"})"),
            0.0);
  EXPECT_EQ(sample(o.out, R"(flowbus_ring_writer_alive{bus=")" + b + R"(",topic="orders.created",publisher="live"})"),
            1.0);
  // The lagging subscriber holds a cursor in "done" and has read none of the 7 published after it subscribed.
  const std::regex lag("\nflowbus_reader_lag_events\\{bus=\"" + b +
                       "\",topic=\"orders.created\",publisher=\"done\",slot=\"\\d+\",pid=\"" +
                       std::to_string(::getpid()) + "\"\\} 7\n");
  EXPECT_TRUE(std::regex_search(o.out, lag)) << o.out;
  EXPECT_GE(sample(o.out, R"(flowbus_bus_participants{bus=")" + b + R"(",state="alive"})").value_or(0), 1.0);
  EXPECT_EQ(sample(o.out, R"(flowbus_bus_up{bus=")" + b + R"("})"), 1.0);
}

TEST(MetricsCliTest, InspectPrometheusOfAMissingBusFailsAsInspectDoes) {
  const Outcome o = flowbus_cli({"inspect", "no-such-bus-metrics", "--prometheus"});
  EXPECT_EQ(o.exit_code, 1) << describe(o);
  EXPECT_NE(o.err.find("no-such-bus-metrics"), std::string::npos) << describe(o);
  EXPECT_EQ(o.out, "");
  const Outcome both = flowbus_cli({"inspect", "x", "--prometheus", "--json"});
  EXPECT_NE(both.exit_code, 0);
}

TEST(MetricsCliTest, ExporterHelpAndBadListenAddresses) {
  const Outcome help = flowbus_cli({"exporter", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--listen"), std::string::npos);
  EXPECT_NE(help.out.find("/metrics"), std::string::npos);
  for (const std::string bad :
       {"9464", "127.0.0.1", "127.0.0.1:", "127.0.0.1:99999", "127.0.0.1:http", "::1:9464", "[::1]9464"}) {
    const Outcome o = flowbus_cli({"exporter", "--listen", bad}, std::chrono::seconds(10));
    EXPECT_NE(o.exit_code, 0) << bad << "\n" << describe(o);
    EXPECT_NE(o.err.find("HOST:PORT"), std::string::npos) << bad << "\n" << describe(o);
  }
  const Outcome bad_bus = flowbus_cli({"exporter", "--listen", "127.0.0.1:0", "Not A Bus"});
  EXPECT_NE(bad_bus.exit_code, 0);
  const Outcome unresolvable = flowbus_cli({"exporter", "--listen", "no-such-host.invalid:9464"});
  EXPECT_EQ(unresolvable.exit_code, 1) << describe(unresolvable);
}

TEST(MetricsCliTest, ExporterOnAPortInUseSaysSo) {
  Exporter first({});
  ASSERT_NE(first.port, 0);
  const Outcome second = flowbus_cli({"exporter", "--listen", "127.0.0.1:" + std::to_string(first.port)});
  EXPECT_EQ(second.exit_code, 1) << describe(second);
  EXPECT_NE(second.err.find("in use"), std::string::npos) << describe(second);
  first.stop();
}

// Started before its bus exists, the exporter serves flowbus_bus_up 0; then
// the bus appears, goes, and comes back, and it says each on stderr.
TEST(MetricsCliTest, ExporterKeepsServingWhileTheBusComesAndGoes) {
  ScopedBusName name("metrics");
  Exporter exporter({name.name});
  ASSERT_NE(exporter.port, 0);
  Exporter every_bus({});  // no names: buses are found on each scrape
  ASSERT_NE(every_bus.port, 0);
  const std::string up = R"(flowbus_bus_up{bus=")" + name.name + R"("})";
  Reply r = http_request(exporter.port, "/metrics");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(sample(r.body, up), 0.0) << r.body;
  ASSERT_EQ(
      flowbus_cli({"topic", "create", name.name, "orders.created", "--schema", example_schema("order.fbs")}).exit_code,
      0);
  ASSERT_EQ(
      flowbus_cli({"pub", name.name, "orders.created", "--json", kOrderJson, "--count", "3", "--name", "p"}).exit_code,
      0);
  r = http_request(exporter.port, "/metrics");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(sample(r.body, up), 1.0);
  EXPECT_EQ(
      sample(r.body, R"(flowbus_ring_events_total{bus=")" + name.name + R"(",topic="orders.created",publisher="p"})"),
      3.0)
      << r.body;
  // Being scraped makes no one a participant or a reader: the publisher is gone, and so nothing is alive.
  EXPECT_EQ(sample(r.body, R"(flowbus_bus_participants{bus=")" + name.name + R"(",state="alive"})"), 0.0) << r.body;
  EXPECT_EQ(sample(r.body, R"(flowbus_ring_readers{bus=")" + name.name + R"(",topic="orders.created",publisher="p"})"),
            0.0)
      << r.body;
  const Reply all = http_request(every_bus.port, "/metrics");
  EXPECT_EQ(sample(all.body, up), 1.0) << all.body;
  Bus::destroy(name.name);
  EXPECT_FALSE(
      sample(http_request(every_bus.port, "/metrics").body, up).has_value());  // gone from the host: its series end
  r = http_request(exporter.port, "/metrics");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(sample(r.body, up), 0.0);
  EXPECT_EQ(r.body.find("flowbus_ring_events_total{bus=\"" + name.name), std::string::npos);
  ASSERT_EQ(
      flowbus_cli({"topic", "create", name.name, "orders.created", "--schema", example_schema("order.fbs")}).exit_code,
      0);
  r = http_request(exporter.port, "/metrics");
  EXPECT_EQ(sample(r.body, up), 1.0);
  const Outcome all_said = every_bus.stop();
  EXPECT_NE(all_said.err.find("bus " + name.name + " appeared"), std::string::npos) << all_said.err;
  EXPECT_NE(all_said.err.find("bus " + name.name + " is gone from this host"), std::string::npos) << all_said.err;
  const Outcome o = exporter.stop();
  EXPECT_NE(o.err.find("bus " + name.name + " cannot be read"), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("bus " + name.name + " can be read again"), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("stopping on SIGTERM"), std::string::npos) << o.err;
}

// Scrapes in a tight loop while a publisher is killed -9 under them: every
// scrape answers, and afterwards the ring shows its writer gone and keeps its count.
TEST(MetricsCliTest, ExporterScrapesThroughAWriterKilledMinus9) {
  OrdersBus bus;
  Exporter exporter({bus.name.name});
  ASSERT_NE(exporter.port, 0);
  auto pub = endless_publisher(bus.name.name, "victim", 5000);
  const std::string ring = R"({bus=")" + bus.name.name + R"(",topic="orders.created",publisher="victim"})";
  ASSERT_TRUE(eventually(
      [&] {
        return sample(http_request(exporter.port, "/metrics").body, "flowbus_ring_events_total" + ring).value_or(0) >
               50;
      },
      std::chrono::seconds(15)));
  std::atomic<bool> killed{false};
  std::thread killer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    pub->kill_and_reap();
    killed = true;
  });
  // Scrapes before, during and after the kill.
  int asked = 0, answered = 0, after = 0;
  while (after < 30) {
    after += killed ? 1 : 0;
    ++asked;
    answered += http_request(exporter.port, "/metrics").status == 200;
  }
  killer.join();
  EXPECT_EQ(answered, asked);
  EXPECT_GT(asked, 30);
  const Reply a = http_request(exporter.port, "/metrics"), b = http_request(exporter.port, "/metrics");
  EXPECT_EQ(sample(a.body, "flowbus_ring_writer_alive" + ring), 0.0) << a.body;
  EXPECT_GT(sample(a.body, "flowbus_ring_events_total" + ring).value_or(0), 50.0);
  EXPECT_EQ(sample(a.body, "flowbus_ring_events_total" + ring), sample(b.body, "flowbus_ring_events_total" + ring));
  exporter.stop();
}

// A client that never finishes its request, one that sends too much, and odd
// requests: none holds up a scrape, each gets its answer or is cut off.
TEST(MetricsCliTest, ExporterIsNotHeldUpBySlowOrHostileClients) {
  OrdersBus bus;
  ASSERT_EQ(bus.pub(kOrderJson).exit_code, 0);
  Exporter exporter({"--timeout", "3s", "--max-connections", "8", bus.name.name});
  ASSERT_NE(exporter.port, 0);
  // Slowloris: half a request, then nothing.
  const int slow = raw_connect(exporter.port);
  ASSERT_GE(slow, 0);
  ASSERT_GT(::write(slow, "GET /metrics HTTP/1.1\r\nHost: x\r\n", 33), 0);
  // A client that stops reading (its answer is small enough to sit in socket buffers: it must not block anyone either).
  const int mute = raw_connect(exporter.port);
  ASSERT_GT(::write(mute, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 35), 0);
  const auto t0 = std::chrono::steady_clock::now();
  const Reply fine = http_request(exporter.port, "/metrics");
  EXPECT_EQ(fine.status, 200);
  EXPECT_LT(ms_since(t0), 2000) << "a scrape waited for the slow client";
  EXPECT_NE(fine.body.find("# TYPE flowbus_ring_events_total counter"), std::string::npos);
  // Headers past the limit: 431 and closed.
  const int big = raw_connect(exporter.port);
  std::string huge = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Junk: " + std::string(64 * 1024, 'a') + "\r\n\r\n";
  (void)!::send(big, huge.data(), huge.size(), MSG_NOSIGNAL);
  const auto [big_reply, big_closed] = read_until_closed(big, std::chrono::seconds(5));
  EXPECT_EQ(big_reply.rfind("HTTP/1.1 431", 0), 0u) << big_reply.substr(0, 200);
  EXPECT_TRUE(big_closed);
  ::close(big);
  // Garbage: 400 and closed.
  const int junk = raw_connect(exporter.port);
  ASSERT_GT(::write(junk, "\x01\x02 nonsense\r\n\r\n", 15), 0);
  const auto [junk_reply, junk_closed] = read_until_closed(junk, std::chrono::seconds(5));
  EXPECT_EQ(junk_reply.rfind("HTTP/1.1 400", 0), 0u) << junk_reply;
  EXPECT_TRUE(junk_closed);
  ::close(junk);
  EXPECT_EQ(http_request(exporter.port, "/nope").status, 404);
  EXPECT_EQ(http_request(exporter.port, "/metrics", http::verb::post).status, 405);
  EXPECT_EQ(http_request(exporter.port, "/metrics?x=1", http::verb::head).status, 200);
  EXPECT_EQ(http_request(exporter.port, "/").status, 200);
  // The slow client is cut off at its deadline (3 s), not left open.
  const auto [slow_reply, slow_closed] = read_until_closed(slow, std::chrono::seconds(5));
  EXPECT_TRUE(slow_closed);
  EXPECT_EQ(slow_reply, "");
  ::close(slow);
  ::close(mute);
  // More connections than allowed: the extra ones are closed at once, and when they go a scrape works again.
  std::vector<int> crowd;
  for (int i = 0; i < 12; ++i) crowd.push_back(raw_connect(exporter.port));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  for (int fd : crowd) ::close(fd);
  EXPECT_TRUE(
      eventually([&] { return http_request(exporter.port, "/metrics").status == 200; }, std::chrono::seconds(5)));
  const Reply self = http_request(exporter.port, "/metrics");
  EXPECT_GE(sample(self.body, "flowbus_exporter_connections_refused_total").value_or(0), 1.0) << self.body;
  EXPECT_GE(sample(self.body, "flowbus_exporter_timeouts_total").value_or(0), 1.0) << self.body;
  exporter.stop();
}

// Debian's prometheus server scrapes the exporter every second; its query
// API then shows the events published on the bus.
TEST(MetricsCliTest, PrometheusServerScrapesTheExporterAndQueriesTheEvents) {
  if (::access("/usr/bin/prometheus", X_OK) != 0)
    GTEST_SKIP() << "Debian's prometheus package is not installed (make deps)";
  OrdersBus bus;
  ASSERT_EQ(bus.pub(kOrderJson, {"--count", "42", "--name", "shop"}).exit_code, 0);
  Exporter exporter({bus.name.name});
  ASSERT_NE(exporter.port, 0);
  TempDir dir;
  std::ofstream(dir.path / "prometheus.yml") << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                                                "scrape_configs:\n  - job_name: flowbus\n    static_configs:\n"
                                                "      - targets: ['127.0.0.1:"
                                             << exporter.port << "']\n";
  const uint16_t port = free_port();
  ChildProcess server({"/usr/bin/prometheus", "--config.file=" + (dir.path / "prometheus.yml").string(),
                       "--storage.tsdb.path=" + (dir.path / "data").string(),
                       "--web.listen-address=127.0.0.1:" + std::to_string(port), "--log.level=warn"},
                      {.pipe_stdin = false, .capture_stderr = false});
  const auto url_encoded = [](const std::string& query) {
    std::string encoded;
    for (const unsigned char c : query) {
      char hex[4];
      std::snprintf(hex, sizeof hex, "%%%02X", c);
      encoded += std::isalnum(c) || c == '_' || c == '-' || c == '.' ? std::string(1, char(c)) : std::string(hex);
    }
    return encoded;
  };
  const std::string encoded =
      url_encoded("flowbus_ring_events_total{bus=\"" + bus.name.name + "\",publisher=\"shop\"}");
  std::string last;
  const bool seen = eventually(
      [&] {
        last = http_request(port, "/api/v1/query?query=" + encoded).body;
        return std::regex_search(last, std::regex(R"("value":\[[0-9.]+,"42"\])"));
      },
      std::chrono::seconds(40));
  EXPECT_TRUE(seen) << "last answer: " << last;
  EXPECT_NE(last.find("\"job\":\"flowbus\""), std::string::npos) << last;
  // The README's three queries are valid PromQL and evaluate.
  for (const char* q :
       {"sum by (bus, topic) (rate(flowbus_ring_events_total[1m]))", "topk(5, flowbus_reader_lag_events)",
        "sum by (bus, topic) (increase(flowbus_reader_lost_events_total[5m])) > 0"}) {
    const Reply r = http_request(port, "/api/v1/query?query=" + url_encoded(q));
    EXPECT_EQ(r.status, 200) << q << "\n" << r.body;
    EXPECT_NE(r.body.find("\"status\":\"success\""), std::string::npos) << q << "\n" << r.body;
  }
  server.signal(SIGTERM);
  EXPECT_TRUE(server.wait(std::chrono::seconds(10)).has_value());
  exporter.stop();
}
