// A reader's own segment (layout.hpp, "Reader segment"): where a Subscriber
// publishes its position on each ring it reads, in memory only it may write.
// A Block ring's writer that admitted it maps it read-only and obeys those
// positions (least privilege, docs/proposals/least-privilege.md).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "flowbus/detail/layout.hpp"
#include "flowbus/detail/ring.hpp"
#include "segment.hpp"

namespace flowbus::detail {

/// "flowbus.<bus>~": every reader segment of bus `bus` (and their drafts)
/// starts with it. '~' is in no bus, topic or publisher name, so no ring
/// segment and no other bus shares it.
std::string reader_segment_prefix(const std::string& bus);

/// Reads pid and n out of "<prefix><pid>.<n>", where prefix is
/// reader_segment_prefix(bus) + "r."; false for any other name (a draft).
bool parse_reader_segment_name(const std::string& name, const std::string& prefix, uint32_t& pid, uint32_t& n) noexcept;

class ReaderSegment {
 public:
  /// Creates this process's next reader segment of bus `bus`: whole under a
  /// draft name, then linked to the first free "flowbus.<bus>~r.<pid>.<n>",
  /// mode 0640, group `group` (-1: our effective group), recording the
  /// subscription (`tag`, `pattern`; tag 0: none). Throws Error.
  static std::unique_ptr<ReaderSegment> create(const std::string& bus, int64_t group, uint32_t tag = 0,
                                               std::string_view pattern = {});
  /// Removes the segment, which ends its subscription: a reader that is
  /// gone holds nobody back. (Not in a fork() child, whose copy of a
  /// Subscriber holds its parent's segments.)
  ~ReaderSegment();
  ReaderSegment(const ReaderSegment&) = delete;
  ReaderSegment& operator=(const ReaderSegment&) = delete;

  /// A free line for the ring (publisher_id, ring_slot), its position not
  /// yet set (RingReader stores it with its cursor, and frees the line when
  /// it leaves); null when all kReaderLines are taken. Thread: owner only.
  CursorLine* claim_line(uint64_t publisher_id, uint32_t ring_slot) noexcept;
  /// How a reader announces `line` (one of ours) on a ring's bell.
  ReaderAnnouncement announcement_for(const CursorLine* line) const noexcept;

  int64_t group() const noexcept { return group_; }
  const std::string& name() const noexcept { return segment_.name(); }
  const ReaderHeader* header() const noexcept { return reinterpret_cast<const ReaderHeader*>(segment_.data()); }

 private:
  ReaderSegment(Segment segment, int64_t group, pid_t creator, uint32_t n)
      : segment_(std::move(segment)), group_(group), creator_(creator), n_(n) {}
  ReaderHeader* mutable_header() noexcept { return reinterpret_cast<ReaderHeader*>(segment_.data()); }
  Segment segment_;
  int64_t group_;
  pid_t creator_;
  uint32_t n_;  // our name's last number: "flowbus.<bus>~r.<pid>.<n>"
};

/// Removes the reader segments (and drafts) of bus `bus` whose process is
/// dead, among those this process may remove (its own uid's, or all as
/// root: /dev/shm is sticky). Returns how many it removed, and appends
/// their names to `removed` if given.
size_t remove_dead_reader_segments(const std::string& bus, std::vector<std::string>* removed = nullptr);

/// The live processes that hold reader segments of bus `bus` (a reader that
/// opened the bus read-only holds no participant slot: this is how gc knows
/// it is there). Judged by pid, from the names.
std::vector<uint32_t> live_reader_pids(const std::string& bus);

}  // namespace flowbus::detail
