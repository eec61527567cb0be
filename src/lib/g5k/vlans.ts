// Which entries of a site's VLAN list are KaVLANs a job can reserve. Pure.
// The list also holds the production network (`DEFAULT`, type `NULL`) and the global VLANs of
// other sites (`kavlan-global-remote`): neither is reservable here, so neither is ever picked.

import type { KavlanType, VlanItem } from './types.js';

export interface ReservableVlan {
  id: number;
  type: KavlanType;
}

const RESERVABLE: readonly string[] = ['kavlan-local', 'kavlan', 'kavlan-global'];

export function reservableVlans(items: VlanItem[]): ReservableVlan[] {
  return items
    .filter((v) => RESERVABLE.includes(v.type) && /^\d+$/.test(String(v.uid)))
    .map((v) => ({ id: Number(v.uid), type: v.type as KavlanType }))
    .sort((a, b) => a.id - b.id);
}
