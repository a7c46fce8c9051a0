// kafkajs compatibility tests for Fjord.
//
// Run:  FJORD_BOOTSTRAP=127.0.0.1:9092 node --test tests/integration/js/test.js
// (tests/integration/test_kafkajs.py starts a broker, runs this file and then
// verifies the produced data with confluent-kafka.)
//
// Env:
//   FJORD_BOOTSTRAP   host:port of a running broker (tests skip when unset)
//   FJORD_JS_PREFIX   topic name prefix (default: random); the produce test writes
//                     topic `${prefix}-data` and leaves it for external verification.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { Kafka, logLevel, CompressionTypes, Partitioners } = require('kafkajs');

const bootstrap = process.env.FJORD_BOOTSTRAP;
const prefix = process.env.FJORD_JS_PREFIX || `kjs-${crypto.randomBytes(5).toString('hex')}`;
const skip = bootstrap ? false : 'FJORD_BOOTSTRAP not set';

const BASE_TS = 1700000300000;
const DATA_TOPIC = `${prefix}-data`;

let kafka;
let admin;

before(async () => {
  if (skip) return;
  kafka = new Kafka({
    clientId: 'fjord-kafkajs-test',
    brokers: [bootstrap],
    logLevel: logLevel.ERROR,
    connectionTimeout: 10000,
    requestTimeout: 15000,
    retry: { retries: 3, initialRetryTime: 200 },
  });
  admin = kafka.admin();
  await admin.connect();
});

after(async () => {
  if (admin) await admin.disconnect();
});

test('admin createTopics / listTopics / deleteTopics', { skip }, async () => {
  const topic = `${prefix}-adm`;
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions: 3, replicationFactor: 1 }],
    waitForLeaders: true,
    timeout: 10000,
  });
  assert.equal(created, true);

  assert.ok((await admin.listTopics()).includes(topic));

  const md = await admin.fetchTopicMetadata({ topics: [topic] });
  assert.equal(md.topics.length, 1);
  assert.deepEqual(md.topics[0].partitions.map((p) => p.partitionId).sort(), [0, 1, 2]);
  for (const p of md.topics[0].partitions) {
    assert.equal(p.leader, 1);
    assert.deepEqual(p.replicas, [1]);
    assert.deepEqual(p.isr, [1]);
  }

  // creating it again: createTopics resolves false (TOPIC_ALREADY_EXISTS is swallowed by kafkajs)
  assert.equal(await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], timeout: 10000 }), false);

  const offsets = await admin.fetchTopicOffsets(topic);
  assert.deepEqual(
    offsets.map((o) => [o.partition, o.offset, o.low, o.high]).sort((a, b) => a[0] - b[0]),
    [[0, '0', '0', '0'], [1, '0', '0', '0'], [2, '0', '0', '0']],
  );

  await admin.deleteTopics({ topics: [topic], timeout: 10000 });
  let names = await admin.listTopics();
  for (let i = 0; i < 50 && names.includes(topic); i++) {
    await new Promise((r) => setTimeout(r, 100));
    names = await admin.listTopics();
  }
  assert.ok(!names.includes(topic), 'deleted topic still listed');
});

test('admin createTopics rejects an invalid name', { skip }, async () => {
  await assert.rejects(
    admin.createTopics({ topics: [{ topic: 'bad name!', numPartitions: 1 }], timeout: 10000 }),
    (err) => {
      // KafkaJSAggregateError from createTopics carries the per-topic broker errors
      const errs = err.errors || [err];
      assert.ok(errs.some((e) => e.type === 'INVALID_TOPIC_EXCEPTION'), `got ${err} ${JSON.stringify(errs.map((e) => e.type))}`);
      return true;
    },
  );
});

test('producer none + gzip with keys and headers, then offsets', { skip }, async () => {
  assert.equal(await admin.createTopics({
    topics: [{ topic: DATA_TOPIC, numPartitions: 1, replicationFactor: 1 }],
    waitForLeaders: true,
  }), true);

  const producer = kafka.producer({
    idempotent: false,
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner,
  });
  await producer.connect();
  try {
    const batch = (from, to) => {
      const msgs = [];
      for (let i = from; i < to; i++) {
        msgs.push({
          partition: 0,
          key: `key-${i}`,
          value: `kafkajs-value-${i}`,
          headers: { idx: String(i), src: 'kafkajs' },
          timestamp: String(BASE_TS + i * 10),
        });
      }
      return msgs;
    };
    const r1 = await producer.send({ topic: DATA_TOPIC, acks: -1, messages: batch(0, 10) });
    assert.equal(r1.length, 1);
    assert.equal(r1[0].errorCode, 0);
    assert.equal(r1[0].baseOffset, '0');
    const r2 = await producer.send({
      topic: DATA_TOPIC, acks: -1, compression: CompressionTypes.GZIP, messages: batch(10, 20),
    });
    assert.equal(r2[0].errorCode, 0);
    assert.equal(r2[0].baseOffset, '10');
    const r3 = await producer.send({ topic: DATA_TOPIC, acks: 1, messages: batch(20, 25) });
    assert.equal(r3[0].baseOffset, '20');
  } finally {
    await producer.disconnect();
  }

  const offsets = await admin.fetchTopicOffsets(DATA_TOPIC);
  assert.deepEqual(offsets.map((o) => [o.partition, o.offset, o.low, o.high]), [[0, '25', '0', '25']]);

  // first offset whose timestamp >= target: record 13 has BASE_TS+130
  let byTs = await admin.fetchTopicOffsetsByTimestamp(DATA_TOPIC, BASE_TS + 125);
  assert.deepEqual(byTs, [{ partition: 0, offset: '13' }]);
  byTs = await admin.fetchTopicOffsetsByTimestamp(DATA_TOPIC, BASE_TS + 130);
  assert.deepEqual(byTs, [{ partition: 0, offset: '13' }]);
  // beyond the last timestamp: kafkajs maps -1 to the high watermark
  byTs = await admin.fetchTopicOffsetsByTimestamp(DATA_TOPIC, BASE_TS + 1000000);
  assert.deepEqual(byTs, [{ partition: 0, offset: '25' }]);
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(cond, timeoutMs, what) {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`);
    await sleep(100);
  }
}

test('consumer group: three members split six partitions, a leaver\'s partitions move, offsets committed', { skip }, async () => {
  const topic = `${prefix}-group`;
  const groupId = `${prefix}-g`;
  assert.equal(await admin.createTopics({
    topics: [{ topic, numPartitions: 6, replicationFactor: 1 }],
    waitForLeaders: true,
  }), true);
  const producer = kafka.producer({
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner,
  });
  await producer.connect();
  try {
    for (let p = 0; p < 6; p++) {
      const messages = Array.from({ length: 10 }, (_, i) => ({ partition: p, value: `${p}:${i}` }));
      await producer.send({ topic, acks: -1, messages });
    }
  } finally {
    await producer.disconnect();
  }

  const assignments = new Map(); // member index -> its partitions after its last rebalance
  const seen = new Set();
  const consumers = [];
  // A disjoint assignment of all six partitions, every member with some.
  const split = (members) => {
    const all = members.flatMap((i) => assignments.get(i) || []);
    return members.every((i) => (assignments.get(i) || []).length > 0)
      && all.length === 6 && new Set(all).size === 6;
  };
  const describe = () => JSON.stringify([...assignments.entries()]);
  try {
    for (let i = 0; i < 3; i++) {
      const c = kafka.consumer({
        groupId, sessionTimeout: 10000, rebalanceTimeout: 10000, heartbeatInterval: 300, maxWaitTimeInMs: 100,
      });
      c.on(c.events.GROUP_JOIN, (e) => {
        assignments.set(i, [...(e.payload.memberAssignment[topic] || [])].sort((a, b) => a - b));
      });
      await c.connect();
      await c.subscribe({ topic, fromBeginning: true });
      await c.run({ eachMessage: async ({ partition, message }) => { seen.add(`${partition}:${message.offset}`); } });
      consumers.push(c);
    }
    await waitFor(() => split([0, 1, 2]), 60000, () => `three-way split, have ${describe()}`);

    await consumers[0].disconnect();
    assignments.delete(0);
    await waitFor(() => split([1, 2]), 60000, () => `two-way split after a leave, have ${describe()}`);
    await waitFor(() => seen.size === 60, 60000, () => `all 60 messages, have ${seen.size}`);
  } finally {
    for (const c of consumers) await c.disconnect();
  }

  // kafkajs commits what it processed: every partition is committed at its end.
  const committed = await admin.fetchOffsets({ groupId, topics: [topic] });
  assert.deepEqual(
    committed[0].partitions.map((p) => [p.partition, p.offset]).sort((a, b) => a[0] - b[0]),
    [0, 1, 2, 3, 4, 5].map((p) => [p, '10']),
  );
  const described = await admin.describeGroups([groupId]);
  assert.equal(described.groups[0].state, 'Empty');
  assert.equal(described.groups[0].protocolType, 'consumer');
  assert.ok((await admin.listGroups()).groups.some((g) => g.groupId === groupId));
  await admin.deleteGroups([groupId]);
  assert.ok(!(await admin.listGroups()).groups.some((g) => g.groupId === groupId));
});
