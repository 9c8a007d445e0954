// Reads an MCAP file with the MCAP TypeScript library (@mcap/core, and
// @mcap/support for the zstd and lz4 decompressors), written by Foxglove, not
// here, and prints what it found as one JSON object for the C++ test to check.
//   node mcap_interop.cjs FILE            indexed read + stream read of every record
//   node mcap_interop.cjs FILE --stream   stream read only (a file cut short: what it yields)
// NODE_PATH must point at the node_modules the test installed with npm.
"use strict";
const fs = require("fs");
const { McapIndexedReader, McapStreamReader } = require("@mcap/core");
const { loadDecompressHandlers } = require("@mcap/support");
const { crc32 } = require("@foxglove/crc");

const big = (v) => (typeof v === "bigint" ? v.toString() : v);
const hex = (u8) => Buffer.from(u8).toString("hex");

async function main() {
  const [file, mode] = process.argv.slice(2);
  const bytes = fs.readFileSync(file);
  const decompressHandlers = await loadDecompressHandlers();
  const out = { file };

  // Every record, in file order, as a streaming reader meets it (chunk CRCs checked).
  const stream = new McapStreamReader({ includeChunks: true, decompressHandlers, validateCrcs: true });
  stream.append(bytes);
  const opcodes = {};
  let streamMessages = 0;
  let messageIndexEntries = 0;
  let dataEndCrc;
  try {
    for (let r; (r = stream.nextRecord()); ) {
      opcodes[r.type] = (opcodes[r.type] || 0) + 1;
      if (r.type === "Message") streamMessages++;
      if (r.type === "MessageIndex") messageIndexEntries += r.records.length;
      if (r.type === "DataEnd") dataEndCrc = r.dataSectionCrc;
    }
    out.streamError = null;
  } catch (e) {
    out.streamError = String(e.message || e);
  }
  out.stream = { done: stream.done(), bytesRemaining: stream.bytesRemaining(), opcodes, messages: streamMessages, messageIndexEntries };
  if (mode === "--stream") {
    console.log(JSON.stringify(out));
    return;
  }

  const readable = {
    size: async () => BigInt(bytes.length),
    read: async (offset, size) => bytes.subarray(Number(offset), Number(offset + size)),
  };
  const reader = await McapIndexedReader.Initialize({ readable, decompressHandlers }); // checks the summary CRC
  out.header = reader.header;
  out.schemas = [...reader.schemasById.values()].map((s) => ({ id: s.id, name: s.name, encoding: s.encoding, dataBytes: s.data.length, dataHex: hex(s.data) }));
  out.channels = [...reader.channelsById.values()].map((c) => ({
    id: c.id, topic: c.topic, messageEncoding: c.messageEncoding, schemaId: c.schemaId, metadata: Object.fromEntries(c.metadata),
  }));
  const st = reader.statistics;
  out.statistics = st && {
    messageCount: big(st.messageCount), schemaCount: st.schemaCount, channelCount: st.channelCount, chunkCount: st.chunkCount,
    metadataCount: st.metadataCount, messageStartTime: big(st.messageStartTime), messageEndTime: big(st.messageEndTime),
    channelMessageCounts: Object.fromEntries([...st.channelMessageCounts].map(([k, v]) => [k, big(v)])),
  };
  out.chunkIndexes = reader.chunkIndexes.map((c) => ({ compression: c.compression, start: big(c.messageStartTime), end: big(c.messageEndTime), indexedChannels: c.messageIndexOffsets.size }));
  out.metadataIndexes = reader.metadataIndexes.map((m) => m.name);
  out.metadata = [];
  for await (const m of reader.readMetadata()) out.metadata.push({ name: m.name, metadata: Object.fromEntries(m.metadata) });
  // The data section CRC (Data End) over every byte before Data End, computed with Foxglove's crc.
  out.dataSectionCrc = { stored: reader.dataSectionCrc ?? dataEndCrc ?? 0, computed: crc32(bytes.subarray(0, Number(reader.dataEndOffset))) };
  // Every message through the index, in log-time order, chunk CRCs checked.
  let indexed = 0;
  let ordered = true;
  let last = -1n;
  const firstOf = {};
  for await (const m of reader.readMessages({ validateCrcs: true })) {
    indexed++;
    if (m.logTime < last) ordered = false;
    last = m.logTime;
    if (!(m.channelId in firstOf)) firstOf[m.channelId] = { channelId: m.channelId, sequence: m.sequence, logTime: big(m.logTime), publishTime: big(m.publishTime), hex: hex(m.data) };
  }
  out.indexedMessages = indexed;
  out.indexedInTimeOrder = ordered;
  out.firstMessages = Object.values(firstOf);
  // A seek: the messages of the second half of the time range, through the index alone.
  if (st && st.messageCount > 0n) {
    const mid = st.messageStartTime + (st.messageEndTime - st.messageStartTime) / 2n;
    let n = 0;
    for await (const m of reader.readMessages({ startTime: mid })) if (m.logTime >= mid) n++;
    out.fromMiddle = n;
  }
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.log(JSON.stringify({ error: String(e && e.message ? e.message : e) }));
  process.exit(1);
});
