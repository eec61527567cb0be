// One finding of `kabootstrap doctor`: what was checked, how bad it is, and the config field to change.

export type CheckLevel = 'ok' | 'warn' | 'blocker';

export interface DoctorCheck {
  /** What was checked, e.g. `cluster nancy/grappe queue`. */
  check: string;
  level: CheckLevel;
  detail: string;
  /** The config field concerned, e.g. `sites[0].clusters[0].queue`. */
  field?: string;
}
