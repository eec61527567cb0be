// An ed25519 key pair for tests' SSH clients and servers. ssh2 cannot parse a few in a thousand of
// the keys it generates (as src/lib/emulated/ssh.ts generateHostKey says): draw again, so a test
// never fails on the draw.
import ssh2 from 'ssh2';

export function testKeyPair(): { private: string; public: string } {
  for (;;) {
    const k = ssh2.utils.generateKeyPairSync('ed25519');
    const parses = (text: string) => !(ssh2.utils.parseKey(text) instanceof Error);
    if (parses(k.private) && parses(k.public)) return k;
  }
}
