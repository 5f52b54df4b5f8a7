/**
 * memcached server addresses, one spelling everywhere: `host:port`, `[v6 address]:port`, the
 * port 11211 when left out.
 */

/** `server` as a normalized `host:port` (`[v6]:port` for an IPv6 address), or undefined when it is not an address. */
export function normalizeServer(server: unknown): string | undefined {
  const match = typeof server === 'string' ? /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:/[\]]+))(?::(\d{1,5}))?$/.exec(server) : null
  if (!match) return undefined
  const port = Number(match[3] ?? 11211)
  if (port < 1 || port > 65535) return undefined
  return match[1] !== undefined ? `[${match[1]}]:${port}` : `${match[2]}:${port}`
}

/** The host (without brackets) and port of a normalized address, as `net.connect` takes them. */
export function socketAddress(server: string): { host: string; port: number } {
  const at = server.lastIndexOf(':')
  const host = server.slice(0, at)
  return { host: host.startsWith('[') ? host.slice(1, -1) : host, port: Number(server.slice(at + 1)) }
}
