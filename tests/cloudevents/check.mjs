// Validates flowbus's CloudEvents with the CloudEvents SDK for JavaScript:
// every JSON line of the files given (structured mode), and every event
// message of a NATS JetStream stream (the bridge's binary mode), each with a
// round trip through binary and structured mode. Prints "N passed, N failed".
// Usage: node check.mjs --lines FILE... [--nats URL STREAM SUBJECT]
import { readFileSync } from "node:fs";
import { CloudEvent, HTTP } from "cloudevents";
import { connect, consumerOpts } from "nats";

let passed = 0, failed = 0;
const fail = (what, why) => { failed++; console.error(`FAIL ${what}: ${why}`); };

const ATTRS = ["specversion", "id", "source", "type", "time", "datacontenttype", "dataschema", "subject", "flowbustopic", "flowbusseq", "flowbusorigin"];

function sameAttributes(a, b) {
  for (const k of ATTRS) {
    // The SDK keeps time as a JS Date in binary mode: milliseconds. Same instant to the ms.
    if (k === "time" && a.time && b.time && Math.floor(Date.parse(a.time)) === Math.floor(Date.parse(b.time))) continue;
    if (String(a[k] ?? "") !== String(b[k] ?? "")) return `${k}: ${a[k]} != ${b[k]}`;
  }
  return null;
}

function sameData(a, b, back) {
  // Bytes compare as base64 (the SDK hands structured-mode bytes back as a
  // typed array of another width, with data_base64 beside it).
  const norm = (x, ev) => {
    if (ev && typeof ev.data_base64 === "string") return ev.data_base64;
    if (ArrayBuffer.isView(x)) return Buffer.from(x).toString("base64");
    return typeof x === "string" ? x : JSON.stringify(x);
  };
  return norm(a) === norm(b, back);
}

/// Binary and structured mode, out and back: the same event.
function roundTrip(ce, what) {
  for (const mode of ["binary", "structured"]) {
    const msg = mode === "binary" ? HTTP.binary(ce) : HTTP.structured(ce);
    const back = HTTP.toEvent(msg);
    const diff = sameAttributes(ce, back);
    if (diff) return fail(what, `${mode} round trip changed ${diff}`), false;
    if (!sameData(ce.data, back.data, back)) return fail(what, `${mode} round trip changed the data`), false;
  }
  return true;
}

function checkLine(line, what) {
  let obj;
  try { obj = JSON.parse(line); } catch (e) { return fail(what, `not JSON: ${e.message}`); }
  if ("padding" in obj) return;  // inspect --raw padding records are no events
  let ce;
  try {
    ce = new CloudEvent(obj, true);  // strict: validated against the spec's schema
    ce.validate();
  } catch (e) { return fail(what, `not a valid CloudEvent: ${e.message} ${JSON.stringify(e.errors ?? "")}`); }
  // The data must be what datacontenttype says it is.
  if (ce.datacontenttype === "application/json") {
    if (obj.data === undefined || typeof obj.data !== "object") return fail(what, "application/json without JSON data");
  } else if (ce.datacontenttype === "application/x-flatbuffers") {
    if (typeof obj.data_base64 !== "string" || obj.data !== undefined)
      return fail(what, "application/x-flatbuffers needs the bytes under data_base64, not decoded data");
    if (!Buffer.isBuffer(ce.data) && !(ce.data instanceof Uint8Array)) return fail(what, "data_base64 did not decode to bytes");
  } else {
    return fail(what, `unexpected datacontenttype ${ce.datacontenttype}`);
  }
  if (roundTrip(ce, what)) passed++;
}

async function checkNats(url, stream, subject) {
  const nc = await connect({ servers: url });
  const js = nc.jetstream();
  const opts = consumerOpts();
  opts.orderedConsumer();
  const sub = await js.subscribe(subject, opts);
  const jsm = await nc.jetstreamManager();
  const info = await jsm.streams.info(stream);
  let seen = 0;
  const total = info.state.messages;
  for await (const m of sub) {
    seen++;
    const what = `NATS ${m.subject} #${m.seq}`;
    const headers = {};
    for (const [k, v] of m.headers ?? []) headers[k.toLowerCase()] = v[0];
    if (headers["ce-id"] !== undefined) {
      try {
        const ce = HTTP.toEvent({ headers, body: Buffer.from(m.data) });
        ce.validate();
        if (ce.datacontenttype !== "application/x-flatbuffers") fail(what, `content-type ${ce.datacontenttype}`);
        else if (!sameData(ce.data, Buffer.from(m.data))) fail(what, "the SDK's data is not the message's bytes");
        else if (roundTrip(ce, what)) passed++;
      } catch (e) { fail(what, `not a valid binary-mode CloudEvent: ${e.message}`); }
    }
    if (seen >= total) break;
  }
  await nc.close();
}

const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--lines") {
    while (i + 1 < args.length && !args[i + 1].startsWith("--")) {
      const file = args[++i];
      readFileSync(file, "utf8").split("\n").filter((l) => l.trim()).forEach((l, n) => checkLine(l, `${file}:${n + 1}`));
    }
  } else if (args[i] === "--nats") {
    await checkNats(args[i + 1], args[i + 2], args[i + 3]);
    i += 3;
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
