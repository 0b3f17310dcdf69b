// How a command of any of the three CLIs ends: all of its output reaches stdout and stderr, whatever they are (terminal, file, pipe, slow reader), then it exits with its code; a reader that goes away early ends the output quietly.
type Out = NodeJS.WriteStream;

const STREAMS: readonly Out[] = [process.stdout, process.stderr];
let guarded = false;

/**
 * Call once at start-up. A reader that closes early (`| head -1`) makes the next write fail with EPIPE; the rest of
 * that stream's output is dropped and the command finishes with its own exit code, without a stack trace. Any other
 * write error (disk full behind a redirect) is said once on stderr and turns a success into exit code 1.
 */
export function guardOutput(): void {
  if (guarded) return;
  guarded = true;
  for (const stream of STREAMS) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      const gone = err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED';
      // destroy() on stdout/stderr only marks them closed (Node never closes fds 1 and 2); later writes are dropped.
      if (!stream.destroyed) stream.destroy();
      if (gone) return;
      if (!process.exitCode) process.exitCode = 1;
      if (stream !== process.stderr && !process.stderr.destroyed) process.stderr.write(`output failed: ${err.message}\n`);
    });
  }
}

/** Resolves once everything written to STREAM so far has been handed to the kernel (or the stream is gone). */
function flushed(stream: Out): Promise<void> {
  if (stream.destroyed || stream.writableFinished) return Promise.resolve();
  // Writes complete in order: the callback of an empty write runs after every earlier write has been flushed.
  return new Promise((resolve) => stream.write('', () => resolve()));
}

/**
 * Ends the process with CODE once stdout and stderr are flushed. `process.exit()` right after a large write to a pipe
 * would drop whatever the pipe had not taken yet (64 KiB on Linux), which is how piped `audit --json` used to lose records.
 */
export function exitAfterOutput(code: number): void {
  // A write error already recorded (exit code 1) is not overwritten by a command that otherwise succeeded.
  if (code !== 0 || !process.exitCode) process.exitCode = code;
  const exit = (): never => process.exit();
  Promise.all(STREAMS.map(flushed)).then(exit, exit);
}
