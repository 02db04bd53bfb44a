/**
 * A Redis call answered within a time limit, without losing sight of its reply when that comes later.
 *
 * The client's own commandTimeout rejects a call and drops its reply, so nobody learns what a late script
 * did. Here the caller gets the reply or a timeout error, whichever comes first, and a reply that arrives
 * after the timeout is handed to `onLate` (e.g. to give back what a late script counted).
 *
 * When the timer fires, the decision waits for the end of the current turn of the event loop (setImmediate
 * runs after the I/O phase): a reply already received while the loop was busy elsewhere is read first and
 * wins, so a slow event loop is not mistaken for a slow Redis.
 */
export function answerWithin<T>(call: Promise<T>, timeoutMs: number, timeoutError: () => Error, onLate: (reply: T) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let answered = false;
    const timer = setTimeout(() => {
      setImmediate(() => {
        if (answered) return;
        answered = true;
        reject(timeoutError());
      });
    }, timeoutMs);
    call.then(
      (reply) => {
        clearTimeout(timer);
        if (answered) {
          onLate(reply);
          return;
        }
        answered = true;
        resolve(reply);
      },
      (err: unknown) => {
        clearTimeout(timer);
        if (answered) return;
        answered = true;
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}
