// Processes this machine runs for the testbed, by pid.
import { readFileSync } from 'node:fs';

/**
 * Whether a process of this pid exists (signal 0 checks without sending anything). One of another
 * user (EPERM) exists; a zombie (killed, not yet reaped by its parent) is gone all the same.
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    // it went away since
    return false;
  }
}
