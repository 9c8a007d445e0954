// What a Bus handle shares with its publishers and subscribers: the mapped
// directory, this process's participant slot, and the directory operations.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "directory_layout.hpp"
#include "fault_guard.hpp"
#include "flowbus/event.hpp"
#include "flowbus/schema.hpp"
#include "flowbus/topic.hpp"
#include "fork_guard.hpp"
#include "segment.hpp"

namespace flowbus::detail {

/// The three segments of one ring and the constant CloudEvents context of its events.
class WriterDoor;

struct RingSegments {
  Segment data;
  Segment control;
  Segment bell;
  GuardedRange bell_guard;  // declared after `bell`: unregistered before the bell is unmapped
  // Others than the bell's owner may write it (group or other write bits), so
  // they may forge or erase wake requests: sleepers wake in bounded slices.
  bool bell_shared = false;
  RingContext context;
  uint32_t slot = 0;  // index in the directory's ring table
  // The writer's: its door to readers' segments (ring.hpp, ReaderDoor). A
  // shared_ptr so that RingSegments may be destroyed where it is incomplete.
  std::shared_ptr<WriterDoor> door;
  uint64_t publisher_id = 0;
  uint64_t capacity = 0;  // validated at open; never re-read from shared memory
  Policy policy = Policy::Block;
  // Untrusted topics: verifies copies of its events (shared by the rings of
  // one topic and schema in a subscriber); null for trusted topics.
  std::shared_ptr<const SchemaCodec> verifier;
  RingHeader* header() const noexcept { return reinterpret_cast<RingHeader*>(data.data()); }
  uint8_t* records() const noexcept { return data.data() + kRecordsOffset; }
  ControlHeader* control_header() const noexcept { return reinterpret_cast<ControlHeader*>(control.data()); }
  BellHeader* bell_header() const noexcept { return reinterpret_cast<BellHeader*>(bell.data()); }
};

/// A NUL-padded fixed-size name field of a directory slot, as a string.
inline std::string read_name(const char* field, size_t capacity) { return std::string(field, strnlen(field, capacity)); }

std::string host_name();
/// The CloudEvents context shared by every event of one ring.
RingContext make_ring_context(const std::string& host, const std::string& bus, const TopicInfo& topic,
                              const std::string& publisher, uint64_t publisher_id);
/// A mirror ring's events keep their origin's source; sets it and origin_node.
void apply_mirror_origin(RingContext& context, const RingSlot& slot);

std::string directory_segment_name(const std::string& bus);
/// Maps bus `bus`'s directory read-only, for tools (NotFound says how to list buses).
Segment open_directory_read_only(const std::string& bus);
std::string data_segment_name(const std::string& bus, const std::string& topic, const std::string& publisher);
std::string control_segment_name(const std::string& bus, const std::string& topic, const std::string& publisher);
std::string bell_segment_name(const std::string& bus, const std::string& topic, const std::string& publisher);
/// Every segment of one ring, for removal.
std::vector<std::string> ring_segment_names(const std::string& bus, const std::string& topic,
                                            const std::string& publisher);
/// Maps `ring.bell` (already opened or created) through the fault guard and
/// notes whether others may write it.
void guard_bell(RingSegments& ring);
/// Writes a new bell's header (the writer's, at creation and after a repair).
void init_bell(BellHeader& bell) noexcept;
/// A bus directory being made is named "<directory>@new.<pid>" until it is
/// whole ('@' is in no bus name, so no tool takes it for a bus or a ring).
inline constexpr const char* kDirectoryDraftSuffix = "@new.";

/// Opens and checks a ring's segments (magic, version, sizes). Throws Error.
/// The writer opens all three read-write; readers the bell only (data and
/// control are the writer's); tools none.
void open_ring_segments(RingSegments& ring, const std::string& bus, const std::string& topic,
                        const std::string& publisher, Access data_access, Access control_access, Access bell_access);

struct BusState {
  std::string name;
  std::string host;
  Segment segment;
  DirectoryLayout* dir = nullptr;
  pid_t pid = 0;
  uint64_t start_time = 0;
  uint32_t participant = 0;       // our slot (UINT32_MAX: none, read_only)
  uint64_t participant_word = 0;  // our slot's Ready word
  // The directory is mapped read-only: we may not write it (a member of a
  // 0640 bus's group), so we only read (subscribe, list): no participant
  // slot, no clean-up, no topic or ring of ours.
  bool read_only = false;
  uint32_t incarnation = process_incarnation();  // differs in a fork() child: see fork_guard.hpp

  ~BusState();

  /// True in a fork() child of the process that opened the bus.
  bool inherited() const noexcept { return incarnation != process_incarnation(); }
  /// As inherited(), and also after a fork that ran no pthread_atfork
  /// handlers (_Fork, a raw clone): destructors, a cold path, ask this.
  bool not_ours() const noexcept { return inherited() || ::getpid() != pid; }
  /// Throws Error(WrongProcess) in a fork() child; `what` names the handle.
  void check_not_inherited(const char* what) const;
  /// Throws Error(PermissionDenied) if we opened the directory read-only;
  /// `what` says what needed to write it ("publish on topic 't'").
  void check_writable(const std::string& what) const;

  /// What a ring slot's `owner` holds while we own it: our epoch and slot index.
  uint64_t owner_word() const noexcept {
    return SlotWord::pack(SlotWord::epoch(participant_word), participant, kReady);
  }

  /// Is participant slot `index` held by a living process?
  bool participant_alive(uint32_t index) const noexcept;
  /// Alive, and still the participant whose epoch a cursor word recorded.
  static bool liveness_thunk(const void* self, uint32_t index, uint32_t participant_epoch) noexcept {
    const auto* bus = static_cast<const BusState*>(self);
    if (index >= kParticipants) return false;
    const uint64_t w = bus->dir->participants[index].state.load(std::memory_order_acquire);
    return (SlotWord::epoch(w) & 0xff) == participant_epoch && bus->participant_alive(index);
  }
  uint32_t participant_epoch() const noexcept { return SlotWord::epoch(participant_word) & 0xff; }

  void bump_generation() noexcept;
  std::optional<TopicInfo> find_topic(const std::string& name) const;
  std::vector<TopicInfo> topics() const;
  /// Frees what dead participants left: cursors, half-done slots, ring owners.
  /// Returns the number of participants cleaned up.
  size_t clean_up_dead_participants();
  /// Removes rings nobody owns whose retention has ended (both segments,
  /// then the slot), and finishes removals whose remover died. Returns the
  /// number of rings kept (owned or still retained); appends what it removed.
  size_t remove_expired_rings(std::vector<std::string>* removed_segments = nullptr);
};

TopicInfo topic_info_of(const TopicSlot& slot);

}  // namespace flowbus::detail
