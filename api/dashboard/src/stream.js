// Keep one EventSource open to the metrics stream, whatever happens to the connection.

const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 10000;

/**
 * Open `url` and call `onSnapshot(snapshot)` for every `metrics` event and
 * `onState("connecting" | "connected" | "disconnected")` when the connection changes.
 *
 * The browser reconnects by itself after a network error (and when the server ends the
 * stream, as it does after an hour), but gives up for good after an HTTP error (a 502 from
 * nginx while the replicas restart, a 401 for a key that is not valid, a 429 when the key has
 * too many streams open): then `onRefused()`, if given, is asked what to do (EventSource does
 * not say which status it got). It resolves to `{stop: true}` to stop for good, or
 * `{retryMs}` to wait at least that long; otherwise we retry with backoff.
 * A stream that stays silent for `quietMs` (events come every ~2 s) is restarted too: a
 * proxy or a suspended laptop can leave a dead connection that never reports an error.
 *
 * Returns `{stop()}`, which closes the stream for good.
 */
export function connectMetrics(url, { onSnapshot, onState, onRefused, quietMs = 15000 }) {
  let source = null;
  let retryMs = FIRST_RETRY_MS;
  let lastEventAt = 0;
  let retryTimer = null;
  let stopped = false;

  function open() {
    if (stopped) return;
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
      if (source.readyState === EventSource.CLOSED) refused();
    };
  }

  async function refused() {
    source.close();
    let verdict = {};
    if (onRefused) {
      try {
        verdict = (await onRefused()) ?? {};
      } catch (error) {
        console.warn("batchgate: could not tell why the metrics stream was refused", error);
      }
    }
    if (stopped) return;
    if (verdict.stop) stop();
    else retryLater(verdict.retryMs);
  }

  function retryLater(atLeastMs = 0) {
    source.close();
    clearTimeout(retryTimer);
    retryTimer = setTimeout(open, Math.max(retryMs, atLeastMs));
    retryMs = Math.min(retryMs * 2, MAX_RETRY_MS);
  }

  const watchdog = setInterval(() => {
    const live = source && source.readyState !== EventSource.CLOSED;
    if (live && Date.now() - lastEventAt > quietMs) {
      onState("disconnected");
      retryLater();
    }
  }, 1000);

  function stop() {
    stopped = true;
    clearTimeout(retryTimer);
    clearInterval(watchdog);
    if (source) source.close();
  }

  open();
  return { stop };
}
