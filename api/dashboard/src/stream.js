// Keep one EventSource open to the metrics stream, whatever happens to the connection.

const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 10000;

/**
 * Open `url` and call `onSnapshot(snapshot)` for every `metrics` event and
 * `onState("connecting" | "connected" | "disconnected")` when the connection changes.
 *
 * The browser reconnects by itself after a network error, but gives up for good after an
 * HTTP error (a 502 from nginx while the replicas restart): then we retry, with backoff.
 * A stream that stays silent for `quietMs` (events come every ~2 s) is restarted too: a
 * proxy or a suspended laptop can leave a dead connection that never reports an error.
 */
export function connectMetrics(url, { onSnapshot, onState, quietMs = 15000 }) {
  let source = null;
  let retryMs = FIRST_RETRY_MS;
  let lastEventAt = 0;
  let retryTimer = null;

  function open() {
    onState("connecting");
    lastEventAt = Date.now();
    source = new EventSource(url);
    source.onopen = () => onState("connected");
    source.addEventListener("metrics", (event) => {
      lastEventAt = Date.now();
      retryMs = FIRST_RETRY_MS;
      let snapshot;
      try {
        snapshot = JSON.parse(event.data);
      } catch (error) {
        console.warn("batchgate: ignoring a metrics event that is not JSON", error);
        return;
      }
      onState("connected");
      onSnapshot(snapshot);
    });
    source.onerror = () => {
      onState("disconnected");
      if (source.readyState === EventSource.CLOSED) retryLater();
    };
  }

  function retryLater() {
    source.close();
    clearTimeout(retryTimer);
    retryTimer = setTimeout(open, retryMs);
    retryMs = Math.min(retryMs * 2, MAX_RETRY_MS);
  }

  setInterval(() => {
    const live = source && source.readyState !== EventSource.CLOSED;
    if (live && Date.now() - lastEventAt > quietMs) {
      onState("disconnected");
      retryLater();
    }
  }, 1000);

  open();
}
