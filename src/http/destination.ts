// Where outgoing requests may go (DESIGN §3.3): a webhook URL comes from user settings, so without
// a guard any user could make the service call the operator's own network (the metadata server,
// a database on 10.x, the admin port on 127.0.0.1). Destinations that are — or resolve to —
// loopback, private, link-local, multicast, reserved or metadata addresses are refused unless
// WEBHOOK_ALLOW_PRIVATE=1. Checked on the resolved address at connect time (the lookup undici's
// socket uses), so a name that resolves to 10.0.0.1 is refused as 10.0.0.1 is.
import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions, type LookupOneOptions } from 'node:dns';
import { BlockList, isIP } from 'node:net';

const blocked = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, cloud metadata (169.254.169.254)
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const) {
  blocked.addSubnet(net, prefix, 'ipv4');
}
for (const [net, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['64:ff9b::', 96], // NAT64: would reach IPv4 ranges above
  ['fc00::', 7], // unique local (incl. fd00:ec2::254, a metadata address)
  ['fe80::', 10],
  ['ff00::', 8],
] as const) {
  blocked.addSubnet(net, prefix, 'ipv6');
}

/** True for an address no webhook may reach (IPv4-mapped IPv6 is judged as the IPv4 it maps). */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  if (family === 6) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped) return blocked.check(mapped[1]!, 'ipv4');
  }
  return blocked.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

export class DestinationError extends Error {
  readonly code = 'ERR_PRIVATE_DESTINATION';
}

/** Throws DestinationError when the URL's host is an IP literal in a blocked range (names are checked at connect). */
export function checkUrlHost(url: URL): void {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (isPrivateAddress(host)) throw new DestinationError(`destination ${url.host} is a private address (set WEBHOOK_ALLOW_PRIVATE=1 to allow)`);
}

type LookupCb = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/** A `lookup` for net.connect that refuses names resolving to a blocked address. */
export function guardedLookup(hostname: string, options: LookupOneOptions | LookupAllOptions | number, cb: LookupCb): void {
  const opts = typeof options === 'number' ? { family: options } : options;
  dnsLookup(hostname, { ...opts, all: true }, (err, addresses) => {
    if (err) return cb(err, '');
    const bad = addresses.find((a) => isPrivateAddress(a.address));
    if (bad) return cb(new DestinationError(`destination ${hostname} resolves to private address ${bad.address} (set WEBHOOK_ALLOW_PRIVATE=1 to allow)`), '');
    if ((opts as LookupAllOptions).all) return cb(null, addresses);
    const first = addresses[0]!;
    cb(null, first.address, first.family);
  });
}
