// A fluentfn client in Node.js, built only from proto/ (grpc-js + msgpack): times
// 100-byte echo calls, unary and on one pipelining stream, and prints JSON lines.
//   node latency.mjs PROTO ENDPOINT TOKEN TYPE KEY N LABEL
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";
import { encode, decode } from "@msgpack/msgpack";
import { randomBytes } from "node:crypto";

const [protoPath, endpoint, token, typeName, key, nText, label] = process.argv.slice(2);
const n = Number(nText);
const def = protoLoader.loadSync(protoPath, { keepCase: true, longs: Number, defaults: true, bytes: Buffer });
const { ActorHost } = grpc.loadPackageDefinition(def).fluentfn.v1;
const client = new ActorHost(endpoint, grpc.credentials.createInsecure());
const meta = new grpc.Metadata();
meta.set("authorization", `Bearer ${token}`);
const payload = Buffer.alloc(100, "x");

function call(seq) {
  const id = randomBytes(12).toString("hex");
  return {
    type_name: typeName, key, method: "echo", args: Buffer.from(encode([[payload], {}])),
    request_id: id, chain_id: id, deadline: Date.now() / 1000 + 60, seq,
  };
}

function check(reply) {
  if (reply.error && reply.error.code) throw new Error(`call failed: ${reply.error.message}`);
  const value = decode(reply.value);
  if (Buffer.compare(Buffer.from(value), payload) !== 0) throw new Error("echo mismatch");
}

const unary = () => new Promise((resolve, reject) =>
  client.Invoke(call(0), meta, (err, reply) => (err ? reject(err) : resolve(reply))));

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function timeIt(fn) {
  for (let i = 0; i < 50; i++) check(await fn());
  const out = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    check(await fn());
    out.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  return out;
}

const stream = client.InvokeStream(meta);
const pending = new Map();
let nextSeq = 1;
stream.on("data", (batch) => {
  for (const reply of batch.replies) {
    const done = pending.get(reply.seq);
    pending.delete(reply.seq);
    if (done) done(reply);
  }
});
stream.on("error", (err) => { for (const done of pending.values()) done({ error: { code: 14, message: String(err) } }); });
const streamed = () => new Promise((resolve) => {
  const seq = nextSeq++;
  pending.set(seq, resolve);
  stream.write({ calls: [call(seq)] });
});

const results = [[`${label}-unary`, await timeIt(unary)], [`${label}-stream`, await timeIt(streamed)]];
stream.end();
client.close();
for (const [system, samples] of results) {
  console.log(JSON.stringify({ system, p50_us: Math.round(median(samples) * 10) / 10, n: samples.length }));
}
