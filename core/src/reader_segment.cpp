#include "reader_segment.hpp"

#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "flowbus/detail/platform.hpp"
#include "flowbus/error.hpp"
#include "liveness.hpp"

namespace flowbus::detail {

namespace {

constexpr uint32_t kReaderMode = 0640;  // others may read it (tools, and the writer from step 6); only we write
constexpr uint32_t kMaxReaderSegmentsPerProcess = 4096;

uint64_t random_token() {
  uint64_t token = 0;
  while (token == 0)
    if (::getrandom(&token, sizeof token, 0) != ssize_t(sizeof token))
      throw Error(ErrorCode::System, std::string("getrandom: ") + std::strerror(errno));
  return token;
}

/// The pid in "<prefix>r.<pid>.<n>" or "<prefix>d.<pid>.<k>", or 0.
pid_t pid_in(const std::string& name, const std::string& prefix) {
  if (name.size() < prefix.size() + 3 || (name[prefix.size()] != 'r' && name[prefix.size()] != 'd') ||
      name[prefix.size() + 1] != '.')
    return 0;
  const char* digits = name.c_str() + prefix.size() + 2;
  char* end = nullptr;
  const long pid = std::strtol(digits, &end, 10);
  return end != digits && *end == '.' && pid > 0 ? pid_t(pid) : 0;
}

}  // namespace

std::string reader_segment_prefix(const std::string& bus) { return "flowbus." + bus + "~"; }

bool parse_reader_segment_name(const std::string& name, const std::string& prefix, uint32_t& pid,
                               uint32_t& n) noexcept {
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return false;
  const char* digits = name.c_str() + prefix.size();
  char* end = nullptr;
  const unsigned long p = std::strtoul(digits, &end, 10);
  if (end == digits || *end != '.' || p == 0 || p > INT32_MAX) return false;
  const char* n_digits = end + 1;
  const unsigned long k = std::strtoul(n_digits, &end, 10);
  if (end == n_digits || *end != 0 || k > UINT32_MAX) return false;
  pid = uint32_t(p);
  n = uint32_t(k);
  return true;
}

std::unique_ptr<ReaderSegment> ReaderSegment::create(const std::string& bus, int64_t group, uint32_t tag,
                                                     std::string_view pattern) {
  if (pattern.size() >= kPatternBytes)
    throw Error(ErrorCode::InvalidArgument, "pattern '" + std::string(pattern) + "' is longer than " +
                                                std::to_string(kPatternBytes - 1) + " bytes");
  const std::string prefix = reader_segment_prefix(bus), pid = std::to_string(::getpid());
  // A draft under a random name: /dev/shm is sticky, so a name another user
  // took first (a predictable one could be) is not ours to remove; we pick
  // another. A draft of a process that died is removed by the next bus open.
  const std::string draft_stem = prefix + "d." + pid + ".";
  const auto make_draft = [&] {
    for (int attempt = 0;; ++attempt) {
      try {
        std::string draft = draft_stem;
        draft += std::to_string(random_token());
        return Segment::create(draft, sizeof(ReaderHeader), kReaderMode, group);
      } catch (const Error& e) {
        if (e.code() != ErrorCode::AlreadyExists || attempt == 15) throw;
      }
    }
  };
  Segment segment = make_draft();
  auto* h = reinterpret_cast<ReaderHeader*>(segment.data());
  h->layout_version = kLayoutVersion;
  h->lines = kReaderLines;
  h->token = random_token();
  h->pid = uint64_t(::getpid());
  h->start_time = process_start_time(::getpid());
  h->created_ns = unix_now_ns();
  if (!pattern.empty()) std::memcpy(h->pattern, pattern.data(), pattern.size());  // the rest is 0 (a new segment)
  // Relaxed: published whole by the magic's release store and the link.
  h->subscription.store(tag, std::memory_order_relaxed);
  // Release: whoever acquires the magic sees the header whole. The link below
  // makes the segment visible whole anyway; tools still read magic first.
  h->magic.store(kReaderMagic, std::memory_order_release);
  const std::string stem = prefix + "r." + pid + ".";
  for (uint32_t n = 0; n < kMaxReaderSegmentsPerProcess; ++n) {
    const std::string name = stem + std::to_string(n);
    if (segment.publish_as(name))
      return std::unique_ptr<ReaderSegment>(new ReaderSegment(std::move(segment), group, ::getpid(), n));
    // Taken: ours (another Subscriber), or squatted; either way the next n.
    // publish_as removed the draft (our mapping stays): make another.
    Segment again = make_draft();
    std::memcpy(again.data(), segment.data(), sizeof(ReaderHeader));
    segment = std::move(again);
  }
  Segment::remove(segment.name());
  throw Error(ErrorCode::NoSpace, "bus '" + bus + "': this process holds " +
                                      std::to_string(kMaxReaderSegmentsPerProcess) +
                                      " reader segments already; close some subscribers");
}

ReaderSegment::~ReaderSegment() {
  // Unlinked, the segment's subscription ends too: a ring's creator, or the
  // writer checking a reservation, finds it by name (subscription_of).
  if (::getpid() == creator_) Segment::remove(segment_.name());
}

CursorLine* ReaderSegment::claim_line(uint64_t publisher_id, uint32_t ring_slot) noexcept {
  for (CursorLine& line : mutable_header()->line) {
    // Relaxed: only we write our lines; readers of them (tools) acquire position.
    if (line.publisher_id.load(std::memory_order_relaxed) != 0) continue;
    // kLineLeft before the new key: a writer that still follows this line
    // for the ring it served before sees "left", never an old position
    // under the new key. Relaxed: the positions RingReader stores from now
    // on are release stores after these, so whoever acquires a position sees
    // whose it is.
    line.position.store(kLineLeft, std::memory_order_relaxed);
    line.ring_slot.store(ring_slot, std::memory_order_relaxed);
    line.last_moved_ns.store(0, std::memory_order_relaxed);
    line.sleeping.store(0, std::memory_order_relaxed);
    line.losses.store(0, std::memory_order_relaxed);
    line.rejected.store(0, std::memory_order_relaxed);
    line.evictions.store(0, std::memory_order_relaxed);
    line.publisher_id.store(publisher_id, std::memory_order_relaxed);
    return &line;
  }
  return nullptr;
}

ReaderAnnouncement ReaderSegment::announcement_for(const CursorLine* line) const noexcept {
  ReaderAnnouncement a;
  a.token = header()->token;
  a.pid = uint32_t(creator_);
  a.n = n_;
  a.line = uint32_t(line - header()->line);
  return a;
}

size_t remove_dead_reader_segments(const std::string& bus, std::vector<std::string>* removed_names) {
  const std::string prefix = reader_segment_prefix(bus);
  size_t removed = 0;
  for (const std::string& name : list_shm_segments()) {
    if (name.rfind(prefix, 0) != 0) continue;
    const pid_t pid = pid_in(name, prefix);
    if (pid == 0 || pid == ::getpid()) continue;  // not ours to judge, or ours
    uint64_t start_time = 0;                      // a draft: its header may be half written
    if (name[prefix.size()] == 'r') {
      try {
        const Segment seg = Segment::open(name, Access::ReadOnly, sizeof(ReaderHeader));
        const auto* h = reinterpret_cast<const ReaderHeader*>(seg.data());
        if (h->magic.load(std::memory_order_acquire) == kReaderMagic && h->pid == uint64_t(pid))
          start_time = h->start_time;
      } catch (const Error&) {
        // Unreadable to us (another group) or cut short: judged by its pid alone.
      }
    }
    if (process_alive(pid, start_time) || !Segment::remove(name)) continue;
    ++removed;
    if (removed_names != nullptr) removed_names->push_back(name);
  }
  return removed;
}

std::vector<uint32_t> live_reader_pids(const std::string& bus) {
  const std::string prefix = reader_segment_prefix(bus) + "r.";
  std::vector<uint32_t> live;
  for (const std::string& name : list_shm_segments()) {
    uint32_t pid = 0, n = 0;
    if (!parse_reader_segment_name(name, prefix, pid, n)) continue;
    if (std::find(live.begin(), live.end(), pid) == live.end() && process_alive(pid_t(pid), 0)) live.push_back(pid);
  }
  return live;
}

}  // namespace flowbus::detail
