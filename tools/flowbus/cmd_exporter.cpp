// flowbus exporter: the metrics of buses for Prometheus, served over HTTP with
// Boost.Beast. Each scrape reads the buses exactly as `flowbus inspect` does
// (inspect_bus: read-only mappings, no cursor, no participant), so a scrape
// never slows a publisher; the page is metrics/prometheus.cpp's.
//
// One thread, asynchronous: a client that sends slowly, never finishes its
// request or never reads the answer is cut off by a per-request deadline
// and does not hold up anyone else's scrape. Requests are bounded (header
// and body limits), and so is the number of open connections.
#include <algorithm>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include "cli_util.hpp"
#include "flowbus/error.hpp"
#include "flowbus/names.hpp"
#include "metrics/prometheus.hpp"

namespace flowbus::cli {

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

constexpr size_t kHeaderLimit = 8 * 1024;   // a Prometheus scrape sends a few hundred bytes
constexpr size_t kBodyLimit = 4 * 1024;     // GET has none; a stray small one is read and ignored
constexpr size_t kBufferLimit = 16 * 1024;  // what one connection may make us hold

/// HOST:PORT, [IPV6]:PORT, or :PORT (every interface).
struct ListenAddress {
  std::string host;
  uint16_t port = 0;
};

ListenAddress parse_listen(const std::string& text) {
  const auto bad = [&](const std::string& why) {
    return CLI::ValidationError(
        "--listen",
        "'" + text + "': " + why + "; write HOST:PORT, e.g. 127.0.0.1:9464, [::1]:9464 or :9464 for every interface");
  };
  std::string host, port;
  if (!text.empty() && text[0] == '[') {
    const size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      throw bad("an IPv6 address needs ]:PORT after it");
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string::npos) throw bad("no port");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string::npos) throw bad("an IPv6 address goes in brackets");
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
    throw bad("the port is not a number");
  const unsigned long p = std::stoul(port);
  if (p > 65535) throw bad("the port is above 65535");
  if (host.empty()) host = "0.0.0.0";
  return {host, uint16_t(p)};
}

std::string now_text() {
  return format_rfc3339(
      uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
                   .count()));
}

void log(const std::string& line) {
  std::fprintf(stderr, "%s flowbus exporter: %s\n", now_text().c_str(), line.c_str());
  std::fflush(stderr);
}

/// Reads the buses and writes the page; says on stderr when a bus appears,
/// goes away or comes back, since serving goes on either way.
class Scraper {
 public:
  explicit Scraper(std::vector<std::string> buses) : buses_(std::move(buses)) {}

  std::string page() {
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<metrics::BusReading> readings = metrics::read_buses(buses_);
    note_changes(readings);
    metrics::Exposition out;
    metrics::declare_bus_families(out);
    for (const auto& r : readings) metrics::add_bus(out, r);
    out.family("flowbus_exporter_scrape_duration_seconds", metrics::Exposition::Type::Gauge,
               "Seconds the exporter took to read the buses for the previous scrape");
    out.family("flowbus_exporter_requests_total", metrics::Exposition::Type::Counter,
               "HTTP requests the exporter answered, by status code");
    out.family("flowbus_exporter_connections_refused_total", metrics::Exposition::Type::Counter,
               "Connections closed at once because too many were open");
    out.family("flowbus_exporter_timeouts_total", metrics::Exposition::Type::Counter,
               "Connections cut because a request or its answer overran the deadline");
    out.add("flowbus_exporter_scrape_duration_seconds", {}, last_duration_);
    for (const auto& [code, n] : requests)
      out.add("flowbus_exporter_requests_total", {{"code", std::to_string(code)}}, n);
    out.add("flowbus_exporter_connections_refused_total", {}, refused);
    out.add("flowbus_exporter_timeouts_total", {}, timeouts);
    last_duration_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return out.text();
  }

  /// Looks once at start, so a bus missing from the outset is said at once.
  void first_look() { note_changes(metrics::read_buses(buses_)); }

  std::map<unsigned, uint64_t> requests;
  uint64_t refused = 0, timeouts = 0;

 private:
  void note_changes(const std::vector<metrics::BusReading>& readings) {
    std::map<std::string, std::string> now;  // bus -> "" (read) or why not
    for (const auto& r : readings) now[r.name] = r.snapshot ? "" : r.error;
    for (const auto& [bus, error] : now) {
      const auto before = state_.find(bus);
      if (before != state_.end() && before->second == error) continue;
      if (!error.empty())
        log("bus " + bus + " cannot be read: " + error + "; serving flowbus_bus_up{bus=\"" + bus +
            "\"} 0 until it can");
      else if (before != state_.end())
        log("bus " + bus + " can be read again");
      else if (seen_first_)
        log("bus " + bus + " appeared");
    }
    for (const auto& [bus, error] : state_)
      if (!now.count(bus)) log("bus " + bus + " is gone from this host; its series end");
    state_ = std::move(now);
    seen_first_ = true;
  }

  std::vector<std::string> buses_;
  std::map<std::string, std::string> state_;
  bool seen_first_ = false;
  double last_duration_ = 0;
};

class Server;

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, Server& server);
  ~Session();
  void start() { read(); }

 private:
  void read();
  void on_read(beast::error_code ec);
  void answer(http::status status, std::string body, bool keep_alive, bool head = false,
              const char* type = "text/plain; charset=utf-8", const char* allow = nullptr);
  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_{kBufferLimit};
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> response_;
  Server& server_;
  std::shared_ptr<size_t> open_;  // the server's count of open connections; outlives it (sessions can end after it)
};

class Server {
 public:
  Server(net::io_context& io, const tcp::endpoint& at, Scraper& scraper, std::chrono::milliseconds timeout,
         size_t max_connections)
      : acceptor_(io), retry_(io), scraper_(scraper), timeout_(timeout), max_connections_(max_connections) {
    acceptor_.open(at.protocol());
    acceptor_.set_option(net::socket_base::reuse_address(true));  // not over a live listener: a port in use still fails
    acceptor_.bind(at);
    acceptor_.listen(net::socket_base::max_listen_connections);
  }
  tcp::endpoint local() const { return acceptor_.local_endpoint(); }
  void accept() {
    acceptor_.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec == net::error::operation_aborted) return;
      if (ec) {  // EMFILE and the like: say so, breathe, go on
        log("accept: " + ec.message());
        retry_.expires_after(std::chrono::milliseconds(200));
        retry_.async_wait([this](beast::error_code e) {
          if (!e) accept();
        });
        return;
      }
      if (*open_ >= max_connections_) {
        ++scraper_.refused;
        beast::error_code ignored;
        socket.close(ignored);
      } else {
        std::make_shared<Session>(std::move(socket), *this)->start();
      }
      accept();
    });
  }
  void stop() {
    beast::error_code ignored;
    acceptor_.close(ignored);
    retry_.cancel();
  }

  Scraper& scraper() { return scraper_; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  std::shared_ptr<size_t> open_ = std::make_shared<size_t>(0);

 private:
  tcp::acceptor acceptor_;
  net::steady_timer retry_;
  Scraper& scraper_;
  std::chrono::milliseconds timeout_;
  size_t max_connections_;
};

Session::Session(tcp::socket socket, Server& server)
    : stream_(std::move(socket)), server_(server), open_(server.open_) {
  ++*open_;
}
Session::~Session() { --*open_; }

void Session::read() {
  parser_.emplace();
  parser_->header_limit(kHeaderLimit);
  parser_->body_limit(kBodyLimit);
  // One deadline for the whole request: trickling a byte at a time does not extend it.
  stream_.expires_after(server_.timeout());
  http::async_read(stream_, buffer_, *parser_,
                   [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
}

void Session::on_read(beast::error_code ec) {
  if (ec == beast::error::timeout) {
    ++server_.scraper().timeouts;
    return;  // the stream closed the socket
  }
  if (ec == http::error::end_of_stream || ec == net::error::eof || ec == net::error::connection_reset) return close();
  if (ec == http::error::header_limit || ec == http::error::buffer_overflow)
    return answer(http::status::request_header_fields_too_large, "request headers too large\n", false);
  if (ec == http::error::body_limit) return answer(http::status::payload_too_large, "request body too large\n", false);
  if (ec) {
    if (ec.category() == http::make_error_code(http::error::bad_target).category())
      return answer(http::status::bad_request, "bad request: " + ec.message() + "\n", false);
    return close();
  }
  const auto& req = parser_->get();
  const bool keep = req.keep_alive();
  const std::string_view target(req.target().data(), req.target().size());
  const std::string_view path = target.substr(0, target.find('?'));
  const bool head = req.method() == http::verb::head;
  if (req.method() != http::verb::get && !head) {
    return answer(http::status::method_not_allowed, "only GET and HEAD\n", keep, false, "text/plain; charset=utf-8",
                  "GET, HEAD");
  }
  if (path == "/metrics") {
    std::string page;
    try {
      page = server_.scraper().page();
    } catch (const std::exception& e) {
      log(std::string("scrape failed: ") + e.what());
      return answer(http::status::internal_server_error, std::string("scrape failed: ") + e.what() + "\n", keep, head);
    }
    return answer(http::status::ok, std::move(page), keep, head, metrics::kContentType);
  }
  if (path == "/")
    return answer(http::status::ok,
                  "<html><body><h1>flowbus exporter</h1><p><a href=\"/metrics\">/metrics</a></p></body></html>\n", keep,
                  head, "text/html; charset=utf-8");
  answer(http::status::not_found, "not found: the metrics are at /metrics\n", keep, head);
}

void Session::answer(http::status status, std::string body, bool keep_alive, bool head, const char* type,
                     const char* allow) {
  ++server_.scraper().requests[unsigned(status)];
  http::response<http::string_body> res{status, 11};
  if (allow) res.set(http::field::allow, allow);
  res.set(http::field::server, "flowbus exporter");
  res.set(http::field::content_type, type);
  res.keep_alive(keep_alive);
  const size_t length = body.size();
  if (!head) res.body() = std::move(body);
  res.content_length(length);
  response_ = std::move(res);
  stream_.expires_after(server_.timeout());  // a client that never reads its answer is cut off too
  http::async_write(stream_, response_, [self = shared_from_this(), keep_alive](beast::error_code ec, size_t) {
    if (ec == beast::error::timeout) ++self->server_.scraper().timeouts;
    if (ec) return;
    self->response_ = {};
    if (keep_alive)
      self->read();
    else
      self->close();
  });
}

}  // namespace

void add_exporter_command(CLI::App& app) {
  struct Args {
    std::vector<std::string> buses;
    std::string listen = "127.0.0.1:9464", timeout = "10s";
    size_t max_connections = 64;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "exporter", "Serve the metrics of buses over HTTP for Prometheus (/metrics; read-only, like inspect)");
  cmd->footer(
      "Examples:\n"
      "  flowbus exporter                              every bus on this host, on 127.0.0.1:9464\n"
      "  flowbus exporter --listen :9464 plant shop    two buses, on every interface\n"
      "  flowbus inspect plant --prometheus            the same page, printed once\n"
      "Each scrape reads the buses as `flowbus inspect` does: read-only, no cursor, so it never slows a publisher.\n"
      "A bus that is missing or goes away is served as flowbus_bus_up 0 and said on stderr; serving goes on.\n"
      "The metrics, a scrape config and queries: README.md, section Metrics.");
  cmd->add_option("bus", args->buses, "buses to serve (default: every bus on this host, as they come and go)");
  cmd->add_option("--listen", args->listen,
                  "HOST:PORT to listen on (default 127.0.0.1:9464; [::1]:9464 for IPv6; :9464 every interface; port 0: "
                  "any free port)");
  cmd->add_option(
      "--timeout", args->timeout,
      "deadline for a client to send its request, and again to read the answer: seconds or with a unit (default 10s)");
  cmd->add_option("--max-connections", args->max_connections,
                  "connections open at once, 1 to 10000 (default 64); more are closed at once")
      ->check(whole_number(1, 10000));
  cmd->callback([args] {
    const ListenAddress at = parse_listen(args->listen);
    const auto timeout_ns = parse_seconds(args->timeout, "--timeout");
    if (timeout_ns == kNever || timeout_ns < std::chrono::milliseconds(10) || timeout_ns > std::chrono::hours(1))
      throw CLI::ValidationError("--timeout", "--timeout must be between 10ms and 1h");
    std::vector<std::string> buses;
    for (const auto& b : args->buses) {
      try {
        validate_bus_name(b);
      } catch (const Error& e) {
        throw CLI::ValidationError("bus", e.what());
      }
      if (std::find(buses.begin(), buses.end(), b) == buses.end()) buses.push_back(b);
    }
    net::io_context io{1};
    tcp::endpoint endpoint;
    beast::error_code ec;
    const auto address = net::ip::make_address(at.host, ec);
    if (!ec) {
      endpoint = {address, at.port};
    } else {
      tcp::resolver resolver(io);
      const auto found = resolver.resolve(at.host, std::to_string(at.port), ec);
      if (ec || found.empty())
        throw Error(ErrorCode::InvalidArgument,
                    "--listen " + args->listen + ": cannot resolve " + at.host + ": " + ec.message());
      endpoint = found.begin()->endpoint();
    }
    Scraper scraper(buses);
    std::optional<Server> server;
    // Before the "serving" line: a SIGTERM right after it must stop us cleanly, not kill us.
    net::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](beast::error_code, int sig) {
      log(std::string("stopping on ") + (sig == SIGINT ? "SIGINT" : "SIGTERM"));
      if (server) server->stop();
      io.stop();
    });
    std::signal(SIGPIPE, SIG_IGN);
    try {
      server.emplace(io, endpoint, scraper, std::chrono::duration_cast<std::chrono::milliseconds>(timeout_ns),
                     args->max_connections);
    } catch (const boost::system::system_error& e) {
      throw Error(
          ErrorCode::InvalidArgument,
          "cannot listen on " + args->listen + ": " + e.code().message() +
              (e.code() == net::error::address_in_use ? " (another exporter? choose a port with --listen)" : ""));
    }
    const tcp::endpoint local = server->local();
    const std::string host =
        local.address().is_v6() ? "[" + local.address().to_string() + "]" : local.address().to_string();
    std::string what = buses.empty() ? "every bus on this host" : "bus";
    for (size_t i = 0; i < buses.size(); ++i) what += (i ? ", " : " ") + buses[i];
    std::printf("flowbus exporter: serving http://%s:%u/metrics for %s\n", host.c_str(), unsigned(local.port()),
                what.c_str());
    std::fflush(stdout);
    scraper.first_look();
    server->accept();
    io.run();
  });
}

}  // namespace flowbus::cli
