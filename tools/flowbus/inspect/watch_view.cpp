// `flowbus inspect BUS --watch`: the snapshot refreshed in place, like top.
// The terminal is put back as it was however the view ends (q, Ctrl-C,
// SIGTERM, an error): alternate screen left, cursor shown, input mode restored.
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>

#include "../cli_util.hpp"
#include "flowbus/error.hpp"
#include "views.hpp"

namespace flowbus::cli {

namespace {

volatile std::sig_atomic_t g_quit = 0;
void on_quit_signal(int) { g_quit = 1; }

/// Alternate screen, hidden cursor, keys without Enter; undone in the destructor.
class LiveTerminal {
 public:
  LiveTerminal() {
    active_ = isatty(STDOUT_FILENO) != 0;
    keys_ = active_ && isatty(STDIN_FILENO) != 0 && tcgetattr(STDIN_FILENO, &saved_) == 0;
    if (keys_) {
      termios raw = saved_;
      raw.c_lflag &= ~tcflag_t(ICANON | ECHO);
      raw.c_cc[VMIN] = 0;
      raw.c_cc[VTIME] = 0;
      tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    }
    if (active_) std::fputs("\x1b[?1049h\x1b[?25l", stdout);
  }
  ~LiveTerminal() {
    if (active_) std::fputs("\x1b[?25h\x1b[?1049l", stdout);
    std::fflush(stdout);
    if (keys_) tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  LiveTerminal(const LiveTerminal&) = delete;
  LiveTerminal& operator=(const LiveTerminal&) = delete;

  bool live() const { return active_; }

  /// Draws `frame` from the top left, cut to the window so it never scrolls.
  void draw(const std::string& frame) const {
    winsize ws{};
    const bool sized = ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0;
    std::string out = "\x1b[H";
    size_t row = 0, start = 0;
    while (start < frame.size() && (!sized || row + 1 < ws.ws_row)) {
      size_t end = frame.find('\n', start);
      if (end == std::string::npos) end = frame.size();
      std::string line = frame.substr(start, end - start);
      if (sized && line.size() >= ws.ws_col) line.resize(ws.ws_col - 1);
      out += line + "\x1b[K\n";
      start = end + 1;
      ++row;
    }
    out += "\x1b[J";
    std::fputs(out.c_str(), stdout);
    std::fflush(stdout);
  }

  /// Waits up to `seconds` for a key; true if it was q (or Q).
  bool wait_for_quit_key(double seconds) const {
    pollfd fd{STDIN_FILENO, POLLIN, 0};
    const int ready = poll(keys_ ? &fd : nullptr, keys_ ? 1 : 0, int(seconds * 1000));
    if (ready <= 0 || !keys_) return false;
    char c = 0;
    return read(STDIN_FILENO, &c, 1) == 1 && (c == 'q' || c == 'Q');
  }

 private:
  termios saved_{};
  bool active_ = false, keys_ = false;
};

std::string clock_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%H:%M:%S", std::localtime(&t));
  return buf;
}

}  // namespace

void run_watch(const std::string& bus, double interval_s, uint64_t frames) {
  // No SA_RESTART: Ctrl-C must interrupt the wait between frames at once.
  struct sigaction quit{};
  quit.sa_handler = on_quit_signal;
  sigemptyset(&quit.sa_mask);
  sigaction(SIGINT, &quit, nullptr);
  sigaction(SIGTERM, &quit, nullptr);
  BusSnapshot before = inspect_bus(bus);  // fails here, before the screen is taken, if the bus is not there
  auto before_time = std::chrono::steady_clock::now();
  LiveTerminal terminal;
  for (uint64_t frame = 0; !g_quit && (frames == 0 || frame < frames); ++frame) {
    if (terminal.wait_for_quit_key(interval_s) || g_quit) break;
    BusSnapshot now = inspect_bus(bus);
    const auto now_time = std::chrono::steady_clock::now();
    const Rates rates = publish_rates(before, now, std::chrono::duration<double>(now_time - before_time).count());
    char head[160];
    std::snprintf(head, sizeof head, "flowbus inspect %s --watch   %s   every %.1fs   %s\n\n", bus.c_str(), clock_now().c_str(),
                  interval_s, terminal.live() ? "q or Ctrl-C quits" : "");
    const std::string body = std::string(head) + render_snapshot(now, rates);
    if (terminal.live()) {
      terminal.draw(body);
    } else {
      std::printf("%s\n", body.c_str());
      std::fflush(stdout);
    }
    before = std::move(now);
    before_time = now_time;
  }
}

}  // namespace flowbus::cli
