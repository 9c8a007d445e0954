// Helpers for the CLI tests: run the real flowbus binary, parse its JSON
// strictly (through FlexBuffers), and a bus with an orders topic.
#pragma once

#include <dirent.h>
#include <gtest/gtest.h>

#include <flatbuffers/flexbuffers.h>
#include <flatbuffers/idl.h>

#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "test_bus.hpp"

namespace flowbus::testing {

using namespace std::chrono_literals;

inline const std::string kCli = FLOWBUS_BINARY_DIR "/bin/flowbus";
inline const std::string kOrderJson = R"({"id":7,"customer":"acme","sku":"A-1","quantity":2,"price_cents":1999})";

using Outcome = ChildProcess::Outcome;

inline Outcome flowbus_cli(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 30s) {
  std::vector<std::string> argv{kCli};
  argv.insert(argv.end(), args.begin(), args.end());
  ChildProcess c(argv, {.pipe_stdin = false, .capture_stderr = true});
  Outcome o = c.communicate(timeout);
  EXPECT_TRUE(o.finished) << "flowbus did not finish within " << timeout.count() << " ms";
  return o;
}

/// What process `pid` left in /dev/shm under `stem` (e.g. "flowbus.perf-"):
/// `perf` names what it makes "<stem><pid>", "<stem><pid>-..." or
/// "<stem><pid>.…", so tests running beside it are never counted.
inline std::set<std::string> left_by(const std::string& stem, pid_t pid);

inline std::string describe(const Outcome& o) { return "exit " + std::to_string(o.exit_code) + "\nstdout:\n" + o.out + "stderr:\n" + o.err; }

inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(line);
  return out;
}

/// One strict JSON document, parsed into a FlexBuffer we can walk.
class Json {
 public:
  explicit Json(const std::string& text) {
    flatbuffers::IDLOptions options;
    options.strict_json = true;
    flatbuffers::Parser parser(options);
    flexbuffers::Builder builder;
    ok_ = parser.ParseFlexBuffer(text.c_str(), nullptr, &builder);
    error_ = parser.error_;
    if (ok_) buffer_ = builder.GetBuffer();
  }
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  flexbuffers::Map root() const { return flexbuffers::GetRoot(buffer_).AsMap(); }

 private:
  bool ok_ = false;
  std::string error_;
  std::vector<uint8_t> buffer_;
};

inline std::string str(const flexbuffers::Map& m, const char* key) { return m[key].IsString() ? m[key].AsString().str() : "<not a string>"; }

inline bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

inline std::set<std::string> shm_entries(const std::string& prefix) {
  std::set<std::string> out;
  if (DIR* d = ::opendir("/dev/shm")) {
    while (const dirent* e = ::readdir(d))
      if (std::string(e->d_name).rfind(prefix, 0) == 0) out.insert(e->d_name);
    ::closedir(d);
  }
  return out;
}

inline std::set<std::string> left_by(const std::string& stem, pid_t pid) {
  const std::string mine = stem + std::to_string(pid);
  std::set<std::string> out;
  for (const std::string& e : shm_entries(mine))
    if (e.size() == mine.size() || e[mine.size()] == '-' || e[mine.size()] == '.') out.insert(e);
  return out;
}

/// A bus (removed at the end of the test) with topic orders.created.
struct OrdersBus {
  ScopedBusName name{"cli"};
  OrdersBus() {
    const Outcome o = flowbus_cli({"topic", "create", name.name, "orders.created", "--schema", example_schema("order.fbs")});
    EXPECT_EQ(o.exit_code, 0) << describe(o);
  }
  Outcome pub(const std::string& json, const std::vector<std::string>& more = {}) const {
    std::vector<std::string> args{"pub", name.name, "orders.created", "--json", json};
    args.insert(args.end(), more.begin(), more.end());
    return flowbus_cli(args);
  }
  Outcome sub(const std::vector<std::string>& more) const {
    std::vector<std::string> args{"sub", name.name, "orders.>", "--from", "earliest"};
    args.insert(args.end(), more.begin(), more.end());
    return flowbus_cli(args);
  }
};

}  // namespace flowbus::testing
