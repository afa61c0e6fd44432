// Where outgoing requests may go (DESIGN §3.3): a webhook URL comes from user settings, so without
// a guard any user could make the service call the operator's own network (the metadata server,
// a database on 10.x, the admin port on 127.0.0.1). Destinations that are — or resolve to —
// loopback, private, link-local, multicast, reserved or metadata addresses are refused unless
// WEBHOOK_ALLOW_PRIVATE=1. Checked on the resolved address at connect time (the lookup undici's
// socket uses), so a name that resolves to 10.0.0.1 is refused as 10.0.0.1 is, and a name that is
// re-pointed after a first, public answer (DNS rebinding) is judged again on every connect.
// Redirects cannot lead around it: undici's request() does not follow them (no redirect
// interceptor is installed), a 3xx is returned to the caller as a failure.
import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions, type LookupOneOptions } from 'node:dns';
import { BlockList, isIP } from 'node:net';

/** Why an address is refused: the label of pusher_http_destinations_refused_total{reason}. */
export type PrivateReason = 'metadata' | 'loopback' | 'private' | 'link_local' | 'unique_local' | 'cgnat' | 'multicast' | 'reserved' | 'unspecified' | 'translated';

// Most specific first: the metadata addresses sit inside link-local and unique-local ranges.
const RANGES: readonly [reason: PrivateReason, net: string, prefix: number, family: 'ipv4' | 'ipv6'][] = [
  ['metadata', '169.254.169.254', 32, 'ipv4'], // AWS, GCP, Azure, …
  ['metadata', '100.100.100.200', 32, 'ipv4'], // Alibaba Cloud
  ['metadata', 'fd00:ec2::254', 128, 'ipv6'], // AWS over IPv6
  ['unspecified', '0.0.0.0', 8, 'ipv4'],
  ['private', '10.0.0.0', 8, 'ipv4'],
  ['cgnat', '100.64.0.0', 10, 'ipv4'],
  ['loopback', '127.0.0.0', 8, 'ipv4'],
  ['link_local', '169.254.0.0', 16, 'ipv4'],
  ['private', '172.16.0.0', 12, 'ipv4'],
  ['reserved', '192.0.0.0', 24, 'ipv4'], // IETF protocol assignments
  ['reserved', '192.0.2.0', 24, 'ipv4'], // documentation (TEST-NET-1..3)
  ['reserved', '198.51.100.0', 24, 'ipv4'],
  ['reserved', '203.0.113.0', 24, 'ipv4'],
  ['private', '192.168.0.0', 16, 'ipv4'],
  ['reserved', '198.18.0.0', 15, 'ipv4'], // benchmarking
  ['multicast', '224.0.0.0', 4, 'ipv4'],
  ['reserved', '240.0.0.0', 4, 'ipv4'], // reserved, broadcast
  ['unspecified', '::', 128, 'ipv6'],
  ['loopback', '::1', 128, 'ipv6'],
  ['translated', '::', 96, 'ipv6'], // IPv4-compatible (::a.b.c.d, deprecated)
  ['translated', '64:ff9b::', 96, 'ipv6'], // NAT64: would reach the IPv4 ranges above
  ['translated', '64:ff9b:1::', 48, 'ipv6'], // local-use NAT64
  ['translated', '2002::', 16, 'ipv6'], // 6to4: embeds an IPv4 address
  ['unique_local', 'fc00::', 7, 'ipv6'],
  ['link_local', 'fe80::', 10, 'ipv6'],
  ['reserved', 'fec0::', 10, 'ipv6'], // site-local (deprecated)
  ['multicast', 'ff00::', 8, 'ipv6'],
];

const lists = RANGES.map(([reason, net, prefix, family]) => {
  const b = new BlockList();
  b.addSubnet(net, prefix, family);
  return { reason, b };
});

/**
 * Why no webhook may reach `address`, or undefined when it may (or it is not an IP address).
 * IPv4-mapped IPv6 (::ffff:a.b.c.d, also as ::ffff:7f00:1) is judged as the IPv4 it maps; an
 * IPv6 zone (%eth0) is ignored.
 */
export function privateReason(address: string): PrivateReason | undefined {
  const bare = address.replace(/%.*$/, '');
  const family = isIP(bare);
  if (family === 0) return undefined;
  const type = family === 4 ? 'ipv4' : 'ipv6';
  // BlockList judges mapped addresses (either spelling) by the IPv4 rules.
  for (const { reason, b } of lists) if (b.check(bare, type)) return reason;
  return undefined;
}

/** True for an address no webhook may reach. */
export function isPrivateAddress(address: string): boolean {
  return privateReason(address) !== undefined;
}

export class DestinationError extends Error {
  readonly code = 'ERR_PRIVATE_DESTINATION';
  constructor(
    message: string,
    readonly reason: PrivateReason,
  ) {
    super(message);
  }
}

/** Throws DestinationError when the URL's host is an IP literal in a blocked range (names are checked at connect). */
export function checkUrlHost(url: URL): void {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const reason = privateReason(host);
  if (reason) throw new DestinationError(`destination ${url.host} is a private address (${reason}; set WEBHOOK_ALLOW_PRIVATE=1 to allow)`, reason);
}

type LookupCb = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;
/** The resolver underneath the guard (dns.lookup; tests give their own). */
export type Resolver = (hostname: string, options: LookupAllOptions, cb: (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void) => void;

/** A `lookup` for net.connect that refuses names resolving to a blocked address (any of them). */
export function makeGuardedLookup(resolve: Resolver = dnsLookup as Resolver): (hostname: string, options: LookupOneOptions | LookupAllOptions | number, cb: LookupCb) => void {
  return (hostname, options, cb) => {
    const opts = typeof options === 'number' ? { family: options } : options;
    resolve(hostname, { ...opts, all: true }, (err, addresses) => {
      if (err) return cb(err, '');
      if (addresses.length === 0) return cb(Object.assign(new Error(`${hostname} resolved to no address`), { code: 'ENOTFOUND' }), '');
      // All of them, not the first: with autoSelectFamily the socket may try any.
      for (const a of addresses) {
        const reason = privateReason(a.address);
        if (reason) return cb(new DestinationError(`destination ${hostname} resolves to private address ${a.address} (${reason}; set WEBHOOK_ALLOW_PRIVATE=1 to allow)`, reason), '');
      }
      if ((opts as LookupAllOptions).all) return cb(null, addresses);
      const first = addresses[0]!;
      cb(null, first.address, first.family);
    });
  };
}

export const guardedLookup = makeGuardedLookup();
