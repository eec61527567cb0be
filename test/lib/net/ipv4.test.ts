// IPv4 prefixes as integers: parsing, formatting and the arithmetic the planner, the DHCP
// policy, the topology checks and the simulated API share.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  broadcastOf,
  containsAddress,
  containsPrefix,
  formatPrefix,
  intToIp,
  ipToInt,
  lastAddress,
  netmask,
  networkOfAddress,
  octetsOf,
  overlaps,
  PrefixError,
  parsePrefix,
  prefixContaining,
  prefixSize,
  subdivide,
} from '../../../src/lib/net/ipv4.js';

describe('ipv4', () => {
  it('converts addresses to unsigned integers and back', () => {
    assert.equal(ipToInt('10.0.0.1'), 0x0a000001);
    assert.equal(ipToInt('255.255.255.255'), 0xffffffff);
    assert.equal(intToIp(0xc0a80401), '192.168.4.1');
    assert.equal(intToIp(ipToInt('172.16.254.3')), '172.16.254.3');
    assert.deepEqual(octetsOf(ipToInt('192.168.4.250')), [192, 168, 4, 250]);
    assert.throws(() => ipToInt('10.0.0'), PrefixError);
    assert.throws(() => ipToInt('10.0.0.256'), PrefixError);
  });

  it('parses prefixes and refuses host bits', () => {
    assert.deepEqual(parsePrefix('10.213.0.0/16'), { base: ipToInt('10.213.0.0'), length: 16 });
    assert.equal(formatPrefix(parsePrefix('192.168.4.8/29')), '192.168.4.8/29');
    assert.throws(() => parsePrefix('10.0.0.5/24'), /host bits set \(network address is 10\.0\.0\.0\)/);
    assert.throws(() => parsePrefix('10.0.0.0/33'), /over 32/);
    assert.throws(() => parsePrefix('10.0.0.0'), PrefixError);
  });

  it('gives sizes, netmasks, last and broadcast addresses', () => {
    const p = parsePrefix('10.0.0.0/24');
    assert.equal(prefixSize(p), 256);
    assert.equal(intToIp(lastAddress(p)), '10.0.0.255');
    assert.equal(netmask(24), '255.255.255.0');
    assert.equal(netmask(29), '255.255.255.248');
    assert.equal(netmask(0), '0.0.0.0');
    assert.equal(netmask(32), '255.255.255.255');
    assert.equal(broadcastOf('10.213.0.0/16'), '10.213.255.255');
  });

  it('tests containment and overlap', () => {
    const outer = parsePrefix('10.0.0.0/16');
    assert.ok(containsAddress(outer, ipToInt('10.0.255.255')));
    assert.ok(!containsAddress(outer, ipToInt('10.1.0.0')));
    assert.ok(containsPrefix(outer, parsePrefix('10.0.4.0/22')));
    assert.ok(!containsPrefix(parsePrefix('10.0.4.0/22'), outer));
    assert.ok(overlaps(outer, parsePrefix('10.0.0.0/8')));
    assert.ok(!overlaps(outer, parsePrefix('10.1.0.0/16')));
  });

  it('splits a prefix into blocks', () => {
    assert.deepEqual(subdivide(parsePrefix('10.0.0.0/22'), 24).map(formatPrefix), [
      '10.0.0.0/24',
      '10.0.1.0/24',
      '10.0.2.0/24',
      '10.0.3.0/24',
    ]);
    assert.throws(() => subdivide(parsePrefix('10.0.0.0/24'), 22), /larger \/22/);
  });

  it('finds the prefix of a given length that holds an address', () => {
    assert.equal(formatPrefix(prefixContaining(ipToInt('10.0.0.5'), 24)), '10.0.0.0/24');
    assert.equal(formatPrefix(prefixContaining(ipToInt('10.0.7.200'), 22)), '10.0.4.0/22');
    assert.equal(formatPrefix(prefixContaining(ipToInt('10.0.7.200'), 32)), '10.0.7.200/32');
    assert.equal(formatPrefix(prefixContaining(ipToInt('203.0.113.9'), 0)), '0.0.0.0/0');
    assert.equal(formatPrefix(prefixContaining(ipToInt('255.255.255.255'), 1)), '128.0.0.0/1');
    assert.throws(() => prefixContaining(0, 33), PrefixError);
    assert.throws(() => prefixContaining(0, -1), PrefixError);
  });

  it('reads an interface address as the network it is on', () => {
    assert.equal(formatPrefix(networkOfAddress('10.0.0.5/24')), '10.0.0.0/24');
    assert.equal(formatPrefix(networkOfAddress('192.168.4.9/29')), '192.168.4.8/29');
    assert.equal(formatPrefix(networkOfAddress('10.1.2.3')), '10.1.2.3/32');
    assert.equal(formatPrefix(networkOfAddress(' 10.0.0.0/16 ')), '10.0.0.0/16');
    assert.throws(() => networkOfAddress('10.0.0.5/40'), PrefixError);
    assert.throws(() => networkOfAddress('eth0/24'), PrefixError);
  });
});
