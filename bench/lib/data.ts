/**
 * The benchmark's session: about 1 KB of JSON, shaped like a web app's (user, preferences
 * three levels deep, a cart, a history), different for every `i`.
 */
export interface BenchSession {
  _session_id: string
  uid: string
  email: string
  name: string
  roles: string[]
  visits: number
  csrf: string
  prefs: { theme: string; lang: string; tz: string; display: { fontSize: number; compact: boolean } }
  cart: { updated: number; currency: string; items: Array<{ sku: number; qty: number; price: number; title: string }> }
  history: string[]
  [key: string]: unknown
}

/** A 32-hex-char id for session `i` of group `group` (stable, so every run uses the same keys). */
export function benchId(group: string, i: number): string {
  let h = 0x811c9dc5
  for (const ch of group) h = Math.imul(h ^ ch.charCodeAt(0), 16777619) >>> 0
  return (h.toString(16).padStart(8, '0') + i.toString(16).padStart(8, '0')).repeat(2).slice(0, 32)
}

export function sessionData(id: string, i: number): BenchSession {
  return {
    _session_id: id,
    uid: `user${i}`,
    email: `user${i}@example.com`,
    name: `Ada Lovelace ${i}`,
    roles: ['reader', 'writer', i % 2 ? 'admin' : 'guest'],
    visits: i,
    csrf: id.split('').reverse().join(''),
    prefs: { theme: i % 2 ? 'dark' : 'light', lang: 'en-GB', tz: 'Europe/London', display: { fontSize: 14, compact: i % 3 === 0 } },
    cart: {
      updated: 1_700_000_000_000 + i,
      currency: 'EUR',
      items: Array.from({ length: 6 }, (_, k) => ({
        sku: 10_000 + i + k,
        qty: 1 + (k % 3),
        price: 9.99 + k,
        title: `Item number ${k} of ${i}`,
      })),
    },
    history: Array.from({ length: 10 }, (_, k) => `/catalog/page/${(i + k) % 97}`),
  }
}

/** The JSON text of session `i` (what is stored). */
export const sessionText = (id: string, i: number): string => JSON.stringify(sessionData(id, i))

/** A tied bench session whose fields are known to be there (the benchmarks seed every one). */
export type Loaded = BenchSession & import('../../src/tie.js').TiedSession
