// Layout of a bus directory segment "flowbus.<bus>". Mapped read-write by
// every participant; changed only by CAS on slot state words.
//
//   0       +------------------------------------------+
//           | magic (written last), version, sizes     |
//   128     +------------------------------------------+
//           | generation: moves on every change        |
//   256     +------------------------------------------+
//           | ParticipantSlot[kParticipants]   128 B   |
//           +------------------------------------------+
//           | TopicSlot[kTopics]        512 B + schema |
//           +------------------------------------------+
//           | RingSlot[kRings]                 512 B   |
//           +------------------------------------------+
//
// Subscriptions are not here: each Subscriber records its pattern in its own
// reader segment (layout.hpp, "Reader segment"; subscriptions.cpp).
//
// Slot state words pack [epoch:24][pid or participant:32][state:8]. A slot is
// claimed by CAS from Free to Claiming (with the claimer in the word), filled,
// then stored Ready. A Claiming slot whose claimer is dead is rolled back by
// whoever sees it, so a process killed mid-change wedges no one.
//
// Memory ordering, for every state word, owner word and magic in this file
// (the code points here rather than repeat it at each line):
//  * a slot's fields are written before its state becomes Ready with a
//    release store (or seq_cst where a duplicate scan follows), and every
//    reader loads the state with acquire before it reads the fields;
//  * claims, takeovers and rollbacks are acq_rel CASes: acquire to see what
//    the previous holder wrote, release to publish what we change;
//  * name claims store "Claiming with name" seq_cst and then scan the other
//    slots with seq_cst loads (Dekker: of two racing creators one sees the other);
//  * fields written after a claim and before Ready (owner, pid, names) may be
//    relaxed: the Ready store publishes them.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "flowbus/detail/layout.hpp"

namespace flowbus::detail {

inline constexpr uint64_t kDirectoryMagic = 0x5249444257574c46ull;  // "FLWWBDIR"
inline constexpr uint32_t kParticipants = 64;
inline constexpr uint32_t kTopics = 128;
inline constexpr uint32_t kRings = 512;
inline constexpr size_t kMaxSchemaBytes = size_t{32} * 1024;
inline constexpr size_t kNameBytes = 128;  // topic and type names, NUL-terminated
inline constexpr size_t kPublisherNameBytes = 40;
inline constexpr size_t kNodeNameBytes = 64;   // a sidecar's node name, NUL-terminated
inline constexpr size_t kSourceBytes = 224;    // a CloudEvents source, NUL-terminated
inline constexpr uint32_t kRingMirror = 1;     // RingSlot::flags: written by a sidecar from another node
inline constexpr uint32_t kTopicUntrusted = 1;  // TopicSlot::flags: readers verify a copy of each event

enum SlotState : uint32_t { kFree = 0, kClaiming = 1, kReady = 2, kCleaning = 3 };

struct SlotWord {
  static uint64_t pack(uint32_t epoch, uint32_t who, uint32_t state) {
    return (uint64_t(epoch & 0xffffff) << 40) | (uint64_t(who) << 8) | state;
  }
  static uint32_t epoch(uint64_t w) { return uint32_t(w >> 40); }
  static uint32_t who(uint64_t w) { return uint32_t(w >> 8); }
  static uint32_t state(uint64_t w) { return uint32_t(w & 0xff); }
};

struct DirectoryHeader {
  std::atomic<uint64_t> magic;
  uint32_t layout_version;
  uint32_t participants;
  uint32_t topics;
  uint32_t rings;
  uint64_t segment_size;
  uint64_t created_ns;
  char pad0[kLinePad - 40];
  std::atomic<uint64_t> generation;
  std::atomic<uint32_t> topology_word;  // futex: bumped with generation, wakes pattern subscribers
  uint32_t reserved;
  char pad1[kLinePad - 16];
};
static_assert(sizeof(DirectoryHeader) == 2 * kLinePad);

// who = pid while Claiming or Cleaning (so a dead claimer is recognised), and
// pid while Ready (Live).
struct ParticipantSlot {
  std::atomic<uint64_t> state;
  uint64_t start_time;   // process start time (clock ticks since boot): catches pid reuse
  uint64_t attached_ns;  // unix ns
  char pad[kLinePad - 24];
};
static_assert(sizeof(ParticipantSlot) == kLinePad);

// who = claiming participant's pid while Claiming.
struct TopicSlot {
  std::atomic<uint64_t> state;
  uint32_t policy;
  uint32_t mode;
  int64_t group;
  uint64_t ring_size;
  uint64_t slow_timeout_ns;  // UINT64_MAX = never
  uint64_t retention_s;
  uint64_t schema_size;
  uint64_t created_ns;
  char name[kNameBytes];
  char type[kNameBytes];
  char schema_id[32];
  // Who created the topic, + 1 (0: unknown, a topic made by an older flowbus):
  // its uid, and the group its segments get. Publishing is allowed as the
  // topic's mode allows writing to that owner and group (see Bus::publisher).
  uint32_t owner_uid_plus1;
  uint32_t owner_gid_plus1;
  // kTopicUntrusted. Was padding (zero) in earlier flowbus of this layout
  // version, so their topics read as trusted, as they were.
  uint32_t flags;
  uint32_t reserved;
  char pad[512 - 64 - 2 * kNameBytes - 32 - 16];
  uint8_t schema[kMaxSchemaBytes];
};
static_assert(offsetof(TopicSlot, schema) == 512);
static_assert(offsetof(TopicSlot, flags) == 64 + 2 * kNameBytes + 32 + 8);

// owner: 0 when no publisher holds the ring, else the owning participant's
// state word (so a participant slot reused by another process is not taken
// for the old owner).
// While a ring is being removed (gc, or an opener removing a ring whose
// retention ended) its owner word is a tombstone naming the remover's pid:
// nobody may take the ring. Removal is: tombstone, remove both segments,
// free the slot. A remover killed half-way leaves a tombstone with a dead
// pid; whoever finds it takes it over and finishes the same steps (removing
// a segment twice is harmless), so the removal always completes.
inline constexpr uint32_t kOwnerRemovingState = 0xfe;
inline uint64_t removing_owner(uint32_t pid) { return (uint64_t(0xffffff) << 40) | (uint64_t(pid) << 8) | kOwnerRemovingState; }
inline bool is_removing_owner(uint64_t owner) { return (owner & 0xff) == kOwnerRemovingState && (owner >> 40) == 0xffffff; }

struct RingSlot {
  std::atomic<uint64_t> state;
  std::atomic<uint64_t> owner;
  uint64_t publisher_id;
  uint64_t created_ns;
  uint32_t owner_pid;  // for messages and tools
  uint32_t owner_participant;
  char topic[kNameBytes];
  char publisher[kPublisherNameBytes];
  // Set when the slot is claimed, never changed while it is Ready.
  uint32_t flags;  // kRingMirror
  uint32_t reserved;
  // Mirror rings (written by a sidecar): where their events were first
  // published. Readers give the events this source, so a mirrored event keeps
  // its CloudEvents id (publisher_id-sequence), source and time.
  char origin_node[kNodeNameBytes];
  char origin_source[kSourceBytes];
  char pad[512 - 48 - kNameBytes - kPublisherNameBytes - kNodeNameBytes - kSourceBytes];
};
static_assert(sizeof(RingSlot) == 512);

struct DirectoryLayout {
  DirectoryHeader header;
  ParticipantSlot participants[kParticipants];
  TopicSlot topics[kTopics];
  RingSlot rings[kRings];
};
static_assert(std::is_standard_layout_v<DirectoryLayout>);
static_assert(kPatternBytes == kNameBytes, "a pattern is as long as a topic name");

}  // namespace flowbus::detail
