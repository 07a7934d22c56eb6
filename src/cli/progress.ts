// The commands' progress bar (`sdql generate`'s steps, `sdql models pull`'s bytes): one line redrawn
// on a terminal; elsewhere a line per tenth of the work, so that logs stay readable.
export class ProgressBar {
  private readonly started = performance.now();
  private lastTenth = -1;

  /** `stats` words the numbers: done and total of the work, and the rate per second so far. */
  constructor(
    private readonly stream: NodeJS.WriteStream,
    private readonly stats: (done: number, total: number, perSecond: number) => string,
  ) {}

  update(done: number, total: number): void {
    const elapsed = (performance.now() - this.started) / 1000;
    const stats = this.stats(done, total, elapsed > 0 ? done / elapsed : 0);
    if (this.stream.isTTY) {
      const width = 30;
      const filled = total > 0 ? Math.round((done / total) * width) : 0;
      this.stream.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${stats}  `);
    } else {
      const tenth = total > 0 ? Math.floor((done / total) * 10) : 0;
      if (tenth !== this.lastTenth) this.stream.write(`${stats}\n`);
      this.lastTenth = tenth;
    }
  }

  done(): void {
    if (this.stream.isTTY) this.stream.write('\n');
  }
}
