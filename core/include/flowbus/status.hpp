// What hot-path calls return: statuses, never exceptions.
#pragma once

namespace flowbus {

/// Result of a publish. Hot path: returned, never thrown.
enum class [[nodiscard]] PublishStatus {
  Ok,
  Full,      ///< Block policy: a live reader has not freed the space yet
  TooLarge,  ///< the event can never fit this ring (a record of more than 7/16 of its size)
  Duplicate, ///< mirror rings only (the sidecar): the ring holds this sequence already; nothing written
  LoanOpen,  ///< a loan of this publisher is open: commit it (or drop it) first
  NoLoan,    ///< commit: this loan is not open (committed or dropped already, or empty)
  WrongProcess,  ///< this publisher came to this process through fork(): it is its parent's; open the bus again
};

/// Result of reading or releasing an event.
// (clang-format 14 takes `enum class [[nodiscard]]` for a braced initializer)
// clang-format off
enum class [[nodiscard]] ReadStatus {
  Ok,
  Empty,     ///< nothing new
  Evicted,   ///< this reader was evicted (too slow or stopped); `missed` tells how many events
  Lost,      ///< Latest policy: the writer lapped this reader; `missed` tells how many events
  Corrupt,   ///< the ring failed a consistency check; it is quarantined
  WrongProcess,  ///< this subscriber came to this process through fork(): it is its parent's; open the bus again
  Rejected,  ///< untrusted topic: `missed` events of ring `ring` failed verification and were skipped; the ring goes on
};
// clang-format on

const char* to_string(PublishStatus status) noexcept;
const char* to_string(ReadStatus status) noexcept;

}  // namespace flowbus
