// Entry of the browser bundle the realtime browser test builds with esbuild: the official npm
// client's `subscribe`, as `window.inngestRealtime.subscribe`.
import { subscribe } from "inngest/realtime";

window.inngestRealtime = { subscribe };
