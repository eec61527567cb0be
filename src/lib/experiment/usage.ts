// The controller's own cost during an experiment: CPU time (process.resourceUsage) and peak
// resident memory, the RSS sampled every second beside the kernel's maxRSS. Runs add up: a resumed
// experiment starts from what the earlier runs recorded.
import type { ControllerUsage } from './report.js';

export class UsageSampler {
  private peak = process.memoryUsage.rss();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly earlier: ControllerUsage = { cpuMs: 0, peakRssBytes: 0, runs: 0 }) {
    this.timer = setInterval(() => {
      this.peak = Math.max(this.peak, process.memoryUsage.rss());
    }, 1000);
    this.timer.unref();
  }

  /** Everything so far, this run included. */
  now(): ControllerUsage {
    const u = process.resourceUsage();
    this.peak = Math.max(this.peak, process.memoryUsage.rss(), u.maxRSS * 1024);
    return {
      cpuMs: Math.round(this.earlier.cpuMs + (u.userCPUTime + u.systemCPUTime) / 1000),
      peakRssBytes: Math.max(this.earlier.peakRssBytes, this.peak),
      runs: this.earlier.runs + 1,
    };
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
