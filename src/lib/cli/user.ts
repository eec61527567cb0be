// Who is asking: rights and environment ownership are per user, as in Kadeploy. The identity is
// the account running the command; only root may act for another user (KABOOTSTRAP_USER, as
// `sudo -u` would), since any other user could otherwise claim to be root and publish or remove
// anyone's environments.
import { userInfo } from 'node:os';
import { InputError } from '../errors.js';

export interface Identity {
  uid: number;
  username: string;
  /** KABOOTSTRAP_USER, if set. */
  requested?: string;
}

export function resolveUser(id: Identity): string {
  if (!id.requested || id.requested === id.username) return id.username;
  if (id.uid !== 0) {
    throw new InputError(
      `KABOOTSTRAP_USER: only root may act as another user (you are ${id.username}, asked for ${id.requested})`,
    );
  }
  return id.requested;
}

export function currentUser(): string {
  const me = userInfo();
  return resolveUser({
    uid: me.uid,
    username: me.username,
    requested: process.env.KABOOTSTRAP_USER || undefined,
  });
}
