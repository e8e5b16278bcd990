// A realtime subscriber with the official npm client (`inngest/realtime`, WebSocket): gets a
// token from the server with the SDK, subscribes, prints "subscribed", then one JSON line per
// message; exits after COUNT messages.
//
//   node --experimental-websocket realtime_subscribe.mjs <server url> <channel> <topic> <count>
//
// With INNGEST_SIGNING_KEY set the token request is signed (start mode); else dev mode.

import { Inngest } from "inngest";
import { getSubscriptionToken, subscribe } from "inngest/realtime";

const [baseUrl, channelName, topic, count] = process.argv.slice(2);
const inngest = new Inngest({
  id: "realtime-subscriber",
  baseUrl,
  isDev: !process.env.INNGEST_SIGNING_KEY,
});

const token = await getSubscriptionToken(inngest, { channel: channelName, topics: [topic] });
const stream = await subscribe({ ...token, apiBaseUrl: baseUrl });
console.log("subscribed");
let seen = 0;
for await (const message of stream) {
  console.log(JSON.stringify(message));
  seen += 1;
  if (seen >= Number(count)) break;
}
process.exit(0);
