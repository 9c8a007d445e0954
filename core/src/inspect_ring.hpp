// The inspector's reading of one ring, from memory: split from inspect.cpp
// so that it can run without shared memory (fuzz/ring_records_fuzz.cpp feeds
// it arbitrary bytes). Reads only; never writes the ring or its control.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "directory_layout.hpp"
#include "flowbus/inspect.hpp"
#include "reader_lines.hpp"

namespace flowbus::detail {

/// Checks a ring's data segment header (magic, version, capacity against the
/// `size` bytes of the segment) and fills out's positions, sequence and
/// retained events. False, with out.error set (naming `bus`), if the header
/// is damaged.
bool snapshot_ring_data(const std::string& bus, const uint8_t* data, uint64_t size, RingSnapshot& out);

/// Fills out's cursors and fill from the writer's attachments in `control`
/// and the readers' `lines` for this ring (find_reader_lines). Only after
/// snapshot_ring_data accepted `data`.
void snapshot_ring_cursors(const uint8_t* data, const ControlHeader* control, const std::vector<FoundReaderLine>& lines,
                           RingSnapshot& out);

/// Why a ring under removal tombstone `owner` (is_removing_owner) is not
/// read: its remover is at it now, or died half-way and `flowbus gc` finishes
/// the removal. Either way not damage.
std::string removal_note(const std::string& bus, uint64_t owner);

}  // namespace flowbus::detail
