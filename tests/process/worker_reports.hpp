// What the test worker processes print, parsed: shared by the process tests.
// See worker.cpp for the lines each worker mode prints.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <sstream>
#include <string>

#include "child_process.hpp"
#include "process/payload.hpp"

namespace flowbus::testing {

using namespace std::chrono_literals;

inline const std::string kWorker = FLOWBUS_BINARY_DIR "/bin/flowbus_test_worker";

struct PublisherReport {
  uint64_t count = 0, first_sequence = 0, first_counter = 0, order_errors = 0, integrity_errors = 0, digest = 0;
  std::string problem;
};

struct SubscriberReport {
  bool done = false;
  std::map<std::string, PublisherReport> publishers;
  uint64_t delivered = 0, evicted = 0, lost = 0, corrupt = 0, missed = 0, release_errors = 0, unexpected = 0;
  std::string text;  // everything it printed, for failure messages
};

/// Reads a subscribe worker's report (see worker.cpp) up to its "done" line.
inline SubscriberReport read_report(ChildProcess& child, std::chrono::milliseconds timeout) {
  SubscriberReport r;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (auto line = child.read_line(std::chrono::duration_cast<std::chrono::milliseconds>(
             std::max(deadline - std::chrono::steady_clock::now(), std::chrono::steady_clock::duration(0))))) {
    r.text += *line + "\n";
    std::istringstream in(*line);
    std::string kind, key;
    in >> kind;
    if (kind == "done") {
      r.done = true;
      break;
    }
    if (kind == "pub") {
      std::string name;
      PublisherReport p;
      in >> name >> key >> p.count >> key >> p.first_sequence >> key >> p.first_counter >> key >> p.order_errors >> key >>
          p.integrity_errors >> key >> std::hex >> p.digest >> std::dec;
      std::getline(in, p.problem);
      r.publishers[name] = p;
    } else if (kind == "summary") {
      in >> key >> r.delivered >> key >> r.evicted >> key >> r.lost >> key >> r.corrupt >> key >> r.missed >> key >>
          r.release_errors >> key >> r.unexpected;
    }
  }
  return r;
}

/// The next line of `child`, which must start with `prefix`; "" (and a failure) otherwise.
inline std::string expect_line(ChildProcess& child, const std::string& prefix, std::chrono::milliseconds timeout = 10s) {
  const auto line = child.read_line(timeout);
  if (!line) {
    ADD_FAILURE() << "pid " << child.pid() << " printed no line (expected '" << prefix << "...')";
    return "";
  }
  if (line->rfind(prefix, 0) != 0) {
    ADD_FAILURE() << "pid " << child.pid() << " printed '" << *line << "', expected '" << prefix << "...'";
    return "";
  }
  return *line;
}

/// Every event of `name` arrived, once, in order, intact.
inline void expect_complete(const SubscriberReport& r, const std::string& name, uint64_t count) {
  ASSERT_TRUE(r.publishers.count(name)) << r.text;
  const PublisherReport& p = r.publishers.at(name);
  EXPECT_EQ(p.count, count) << name << "\n" << r.text;
  EXPECT_EQ(p.first_sequence, 0u) << name;
  EXPECT_EQ(p.first_counter, 0u) << name;
  EXPECT_EQ(p.order_errors, 0u) << name << ":" << p.problem;
  EXPECT_EQ(p.integrity_errors, 0u) << name << ":" << p.problem;
  EXPECT_EQ(p.digest, expected_digest(name, 0, count)) << name << ": the content differs from what was published";
}

/// The reader finished and saw no eviction, loss, damage or stray event.
inline void expect_nothing_lost(const SubscriberReport& r) {
  EXPECT_TRUE(r.done) << r.text;
  EXPECT_EQ(r.evicted, 0u) << r.text;
  EXPECT_EQ(r.lost, 0u) << r.text;
  EXPECT_EQ(r.corrupt, 0u) << r.text;
  EXPECT_EQ(r.missed, 0u) << r.text;
  EXPECT_EQ(r.release_errors, 0u) << r.text;
  EXPECT_EQ(r.unexpected, 0u) << r.text;
}

}  // namespace flowbus::testing
