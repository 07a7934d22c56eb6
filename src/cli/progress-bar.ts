// A one-line progress bar on a terminal; a line per tenth of the work elsewhere (logs stay readable).

export class ProgressBar {
  private readonly started = performance.now();
  private lastTenth = -1;

  constructor(private readonly stream: NodeJS.WriteStream) {}

  /** Seconds since the bar was made. */
  get elapsed(): number {
    return (performance.now() - this.started) / 1000;
  }

  /** `done` of `total` units, with `stats` after the bar. */
  update(done: number, total: number, stats: string): void {
    if (this.stream.isTTY) {
      const width = 30;
      const filled = Math.round((done / Math.max(1, total)) * width);
      this.stream.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${stats}  `);
    } else {
      const tenth = Math.floor((done / Math.max(1, total)) * 10);
      if (tenth !== this.lastTenth) this.stream.write(`${stats}\n`);
      this.lastTenth = tenth;
    }
  }

  done(): void {
    if (this.stream.isTTY) this.stream.write('\n');
  }
}
