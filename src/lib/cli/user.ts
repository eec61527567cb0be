// Who is asking: rights and environment ownership are per user, as in Kadeploy.
import { userInfo } from 'node:os';

export function currentUser(): string {
  return process.env.KABOOTSTRAP_USER || userInfo().username;
}
