// One MQTT.js client for the WebSocket tests (tests/websocket): connects to the URL given,
// does one job and prints what happened, one line per event, for the Rust test to check:
//   connected session_present=<true|false>
//   subscribed <granted QoS or reason code>
//   message <topic> qos=<0|1|2> retain=<true|false> <payload>
//   published <topic>
//   dropped
// Usage: node client.js <subscribe|publish|will> <url> [--version 4|5] [--id ID]
//        [--clean true|false] [--expiry SECONDS] [--topic T] [--qos Q] [--count N]
//        [--payload P] [--retain true|false] [--ca FILE]
// subscribe: subscribes to --topic (unless none is given) and ends after --count messages;
// publish: publishes --payload to --topic and ends once the broker has acknowledged it;
// will: connects with a Will (--topic, --payload, --qos) and drops its connection without
// DISCONNECT. Every job ends with a clean DISCONNECT but `will`; an error or 20 s without the
// end exits with a non-zero status and the reason on stderr.
'use strict';

const fs = require('fs');
const { parseArgs } = require('util');
const mqtt = require('mqtt');

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    version: { type: 'string', default: '5' },
    id: { type: 'string', default: '' },
    clean: { type: 'string', default: 'true' },
    expiry: { type: 'string', default: '0' },
    topic: { type: 'string' },
    qos: { type: 'string', default: '0' },
    count: { type: 'string', default: '0' },
    payload: { type: 'string', default: '' },
    retain: { type: 'string', default: 'false' },
    ca: { type: 'string' },
  },
});
const [job, url] = positionals;
const version = Number(values.version);
const qos = Number(values.qos);

function fail(why) {
  process.stderr.write(`client.js ${job}: ${why}\n`);
  process.exit(1);
}

setTimeout(() => fail('did not finish within 20 s'), 20000).unref();

const options = {
  protocolVersion: version,
  clientId: values.id,
  clean: values.clean === 'true',
  reconnectPeriod: 0,
  connectTimeout: 10000,
};
if (version === 5 && Number(values.expiry) > 0) {
  options.properties = { sessionExpiryInterval: Number(values.expiry) };
}
if (values.ca) {
  options.ca = fs.readFileSync(values.ca);
}
if (job === 'will') {
  options.will = { topic: values.topic, payload: values.payload, qos, retain: false };
}

const client = mqtt.connect(url, options);
client.on('error', (error) => fail(error.message));

function end() {
  client.end(false, {}, () => process.exit(0));
}

client.once('connect', (connack) => {
  console.log(`connected session_present=${connack.sessionPresent}`);
  if (job === 'subscribe') {
    subscribe();
  } else if (job === 'publish') {
    const retain = values.retain === 'true';
    client.publish(values.topic, values.payload, { qos, retain }, (error) => {
      if (error) fail(error.message);
      console.log(`published ${values.topic}`);
      end();
    });
  } else if (job === 'will') {
    console.log('dropped');
    client.stream.destroy();
    process.exit(0);
  } else {
    fail(`unknown job ${job}`);
  }
});

function subscribe() {
  const count = Number(values.count);
  let received = 0;
  client.on('message', (topic, payload, packet) => {
    console.log(`message ${topic} qos=${packet.qos} retain=${packet.retain} ${payload}`);
    received += 1;
    if (received === count) end();
  });
  if (values.topic === undefined) {
    if (count === 0) end();
    return;
  }
  client.subscribe(values.topic, { qos }, (error, granted) => {
    if (error) fail(error.message);
    console.log(`subscribed ${granted.map((grant) => grant.qos).join(',')}`);
    if (count === 0) end();
  });
}
