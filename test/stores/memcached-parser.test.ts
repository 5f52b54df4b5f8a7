import test from 'ava'
import { ReplyParser, type ParsedReply, type ReplyKind } from '../../src/stores/memcached-parser.js'

/** A value holding what looks like replies, CR/LF and multibyte UTF-8. */
const ODD = 'END\r\nVALUE x 0 1\r\né€𝄞\r\n'

/** Replies as memcached 1.6.18 sends them, with what they parse to. */
const CASES: [ReplyKind, string, ParsedReply][] = [
  ['items', 'END\r\n', { kind: 'items', items: [] }],
  ['items', 'VALUE k 0 2\r\nv1\r\nEND\r\n', { kind: 'items', items: [{ value: 'v1', flags: 0, cas: undefined }] }],
  ['items', 'VALUE k 5 2 77\r\nv1\r\nEND\r\n', { kind: 'items', items: [{ value: Buffer.from('v1'), flags: 5, cas: '77' }] }],
  // framed by its byte count
  [
    'items',
    `VALUE k 0 ${Buffer.byteLength(ODD)}\r\n${ODD}\r\nEND\r\n`,
    { kind: 'items', items: [{ value: ODD, flags: 0, cas: undefined }] },
  ],
  [
    'items',
    'VALUE a 0 1\r\n1\r\nVALUE b 0 0\r\n\r\nEND\r\n',
    {
      kind: 'items',
      items: [
        { value: '1', flags: 0, cas: undefined },
        { value: '', flags: 0, cas: undefined },
      ],
    },
  ],
  ['items', 'SERVER_ERROR out of memory\r\n', { kind: 'server_error', line: 'SERVER_ERROR out of memory' }],
  ...(['STORED', 'NOT_STORED', 'EXISTS', 'NOT_FOUND', 'DELETED', 'TOUCHED'] as const).map((status): [ReplyKind, string, ParsedReply] => [
    'status',
    `${status}\r\n`,
    { kind: 'status', status },
  ]),
  ['status', 'SERVER_ERROR object too large for cache\r\n', { kind: 'server_error', line: 'SERVER_ERROR object too large for cache' }],
  ['meta', 'HD c1\r\n', { kind: 'meta', code: 'HD', flags: { c: '1' }, value: undefined }],
  ['meta', 'HD\r\n', { kind: 'meta', code: 'HD', flags: {}, value: undefined }],
  ['meta', 'VA 2 c1 t60 s2 f0\r\nhi\r\n', { kind: 'meta', code: 'VA', flags: { c: '1', t: '60', s: '2', f: '0' }, value: 'hi' }],
  ['meta', 'VA 8 t-1\r\na\r\nbé\r\n\r\n', { kind: 'meta', code: 'VA', flags: { t: '-1' }, value: 'a\r\nbé\r\n' }],
  ['meta', 'VA 0\r\n\r\n', { kind: 'meta', code: 'VA', flags: {}, value: '' }],
  ...(['EN', 'NS', 'EX', 'NF', 'MN'] as const).map((code): [ReplyKind, string, ParsedReply] => [
    'meta',
    `${code}\r\n`,
    { kind: 'meta', code, flags: {}, value: undefined },
  ]),
  ['meta', 'EX c0\r\n', { kind: 'meta', code: 'EX', flags: { c: '0' }, value: undefined }],
  ['probe', 'MN\r\n', { kind: 'meta', code: 'MN', flags: {}, value: undefined }],
  ['probe', 'ERROR\r\n', { kind: 'refused', line: 'ERROR' }],
  ['dump', 'END\r\n', { kind: 'dump', entries: [] }],
  [
    'dump',
    'key=a%20b exp=-1 la=1 cas=2 fetch=no cls=1 size=60\nkey=k exp=1796154685 la=1796154586 cas=4 fetch=yes cls=1 size=66\nEND\r\n',
    {
      kind: 'dump',
      entries: [
        { key: 'a b', exp: -1 },
        { key: 'k', exp: 1796154685 },
      ],
    },
  ],
  ['dump', 'BUSY currently processing crawler request\r\n', { kind: 'refused', line: 'BUSY currently processing crawler request' }],
  ['dump', 'BADCLASS invalid class id\r\n', { kind: 'refused', line: 'BADCLASS invalid class id' }],
  ['dump', 'ERROR metadump not allowed\r\n', { kind: 'refused', line: 'ERROR metadump not allowed' }],
  [
    'stats',
    'STAT pid 12\r\nSTAT version 1.6.18\r\nSTAT libevent 2.1.12-stable\r\nEND\r\n',
    { kind: 'stats', stats: { pid: '12', version: '1.6.18', libevent: '2.1.12-stable' } },
  ],
]

function parse(kinds: ReplyKind[], chunks: Buffer[]): ParsedReply[] {
  const parser = new ReplyParser()
  for (const kind of kinds) parser.expect(kind)
  return chunks.flatMap((chunk) => parser.push(chunk))
}

test('every reply, whole and cut at every byte boundary (in two and in one-byte pieces), parses to the same reply', (t) => {
  for (const [kind, text, expected] of CASES) {
    const bytes = Buffer.from(text)
    t.deepEqual(parse([kind], [bytes]), [expected], text)
    for (let cut = 1; cut < bytes.length; cut++) {
      t.deepEqual(parse([kind], [bytes.subarray(0, cut), bytes.subarray(cut)]), [expected], `${JSON.stringify(text)} cut at ${cut}`)
    }
    const single = [...bytes].map((byte) => Buffer.from([byte]))
    t.deepEqual(parse([kind], single), [expected], `${JSON.stringify(text)} byte by byte`)
  }
})

test('several replies in one chunk come out in order, and a reply split over chunks waits for its rest', (t) => {
  const all = Buffer.concat(CASES.map(([, text]) => Buffer.from(text)))
  const kinds = CASES.map(([kind]) => kind)
  const expected = CASES.map(([, , reply]) => reply)
  t.deepEqual(parse(kinds, [all]), expected)
  for (const size of [1, 2, 3, 5, 7, 64]) {
    const chunks: Buffer[] = []
    for (let at = 0; at < all.length; at += size) chunks.push(all.subarray(at, at + size))
    t.deepEqual(parse(kinds, chunks), expected, `pieces of ${size} bytes`)
  }
  const parser = new ReplyParser()
  parser.expect('status')
  parser.expect('items')
  t.is(parser.waiting, 2)
  t.deepEqual(parser.push(Buffer.from('STORED\r\nVALUE k 0 5\r\nab')), [{ kind: 'status', status: 'STORED' }])
  t.is(parser.waiting, 1)
  t.deepEqual(parser.push(Buffer.from('cde\r\nEND\r\n')), [{ kind: 'items', items: [{ value: 'abcde', flags: 0, cas: undefined }] }])
  t.is(parser.waiting, 0)
})

test('out-of-step and garbage replies are reported once, and the parser is spent until reset', (t) => {
  const bad: [ReplyKind, string, string][] = [
    ['status', 'ERROR\r\n', 'ERROR'],
    ['status', 'ERROR Too many open connections\r\n', 'ERROR Too many open connections'],
    ['items', 'CLIENT_ERROR bad data chunk\r\n', 'CLIENT_ERROR bad data chunk'],
    ['items', 'STORED\r\n', 'STORED'],
    ['status', 'END\r\n', 'END'],
    ['meta', 'CLIENT_ERROR bad command line format\r\nERROR\r\n', 'CLIENT_ERROR bad command line format'],
    ['meta', 'STORED\r\n', 'STORED'],
    ['probe', 'ERROR Too many open connections\r\n', 'ERROR Too many open connections'],
    ['items', 'VALUE k 0 2\r\nabc\r\nEND\r\n', 'VALUE k 0 2'], // a wrong byte count
    ['items', 'VALUE k x 2\r\nab\r\nEND\r\n', 'VALUE k x 2'],
    // VALUE lines that are not <key> <flags> <bytes>[ <cas>], every part digits where digits go
    ...['VALUE k 0', 'VALUE  0 2', 'VALUE k 0 2 ', 'VALUE k 0 2 x', 'VALUE k 0 -2', 'VALUE k 0 2 7 7', 'VALUE k 0x1 2', 'VALUE k  2'].map(
      (header): [ReplyKind, string, string] => ['items', `${header}\r\nab\r\nEND\r\n`, header],
    ),
    ['meta', 'VA 1\r\nabc\r\n', 'VA 1'],
    ['dump', 'key=%E0%A4%A exp=1 la=1\nEND\r\n', 'key=%E0%A4%A exp=1 la=1'],
    ['dump', 'hello\r\n', 'hello'],
    ['stats', 'STORED\r\n', 'STORED'],
  ]
  for (const [kind, text, line] of bad) {
    t.deepEqual(parse([kind, 'status'], [Buffer.from(text + 'STORED\r\n')]), [{ kind: 'out_of_step', line }], text)
  }
  // bytes nobody waits for: reported at once, even before their line ends
  t.deepEqual(parse([], [Buffer.from('STOR')]), [{ kind: 'out_of_step', line: 'STOR' }])
  t.deepEqual(parse(['status'], [Buffer.from('STORED\r\nDELETED\r\n')]), [
    { kind: 'status', status: 'STORED' },
    { kind: 'out_of_step', line: 'DELETED' },
  ])
  const parser = new ReplyParser()
  parser.expect('status')
  t.deepEqual(parser.push(Buffer.from('garbage\r\n')), [{ kind: 'out_of_step', line: 'garbage' }])
  t.deepEqual(parser.push(Buffer.from('STORED\r\n')), [], 'spent')
  parser.reset()
  t.is(parser.waiting, 0)
  parser.expect('status')
  t.deepEqual(parser.push(Buffer.from('STORED\r\n')), [{ kind: 'status', status: 'STORED' }], 'in service again after reset')
})

test('a large value and a long dump parse whole from many small chunks', (t) => {
  const value = 'é'.repeat(300_000)
  const bytes = Buffer.from(`VALUE big 0 ${Buffer.byteLength(value)}\r\n${value}\r\nEND\r\n`)
  const chunks: Buffer[] = []
  for (let at = 0; at < bytes.length; at += 1460) chunks.push(bytes.subarray(at, at + 1460))
  t.deepEqual(parse(['items'], chunks), [{ kind: 'items', items: [{ value, flags: 0, cas: undefined }] }])
  const lines = Array.from({ length: 5000 }, (_, i) => `key=k${i} exp=-1 la=1 cas=${i} fetch=no cls=1 size=60\n`).join('')
  const dump = Buffer.from(`${lines}END\r\n`)
  const pieces: Buffer[] = []
  for (let at = 0; at < dump.length; at += 999) pieces.push(dump.subarray(at, at + 999))
  const [reply] = parse(['dump'], pieces)
  t.is(reply?.kind === 'dump' && reply.entries.length, 5000)
})

test('bytesFlags: only the flag bits that say "bytes" keep a value from being text (replicas stamp the others)', (t) => {
  const parse = (parser: ReplyParser, kind: ReplyKind, text: string) => {
    parser.expect(kind)
    return parser.push(Buffer.from(text))[0]
  }
  const stamped = new ReplyParser(3)
  t.deepEqual(parse(stamped, 'items', 'VALUE k 8 2\r\nv1\r\nEND\r\n'), {
    kind: 'items',
    items: [{ value: 'v1', flags: 8, cas: undefined }],
  })
  t.deepEqual(parse(stamped, 'items', 'VALUE k 9 2\r\nv1\r\nEND\r\n'), {
    kind: 'items',
    items: [{ value: Buffer.from('v1'), flags: 9, cas: undefined }],
  })
  const meta = parse(stamped, 'meta', 'VA 2 f16 c5\r\nv1\r\n')
  t.is(meta?.kind === 'meta' ? meta.value : undefined, 'v1')
  t.deepEqual(parse(new ReplyParser(), 'items', 'VALUE k 8 2\r\nv1\r\nEND\r\n'), {
    kind: 'items',
    items: [{ value: Buffer.from('v1'), flags: 8, cas: undefined }],
  })
})

test('a flags-0 value is text only when its bytes are UTF-8: other bytes stay bytes, a real U+FFFD stays text', (t) => {
  const item = (kind: ReplyKind, value: Buffer) => {
    const parser = new ReplyParser()
    parser.expect(kind)
    const head = kind === 'items' ? `VALUE k 0 ${value.length}\r\n` : `VA ${value.length}\r\n`
    const [reply] = parser.push(Buffer.concat([Buffer.from(head), value, Buffer.from(kind === 'items' ? '\r\nEND\r\n' : '\r\n')]))
    return reply?.kind === 'items' ? reply.items[0]?.value : reply?.kind === 'meta' ? reply.value : reply
  }
  for (const kind of ['items', 'meta'] as const) {
    // Latin-1 "café", a lone continuation byte, a truncated sequence, an encoded surrogate (CESU-8)
    for (const bytes of [
      [0x63, 0x61, 0x66, 0xe9],
      [0x61, 0x80],
      [0xe2, 0x82],
      [0xed, 0xa0, 0x80],
    ]) {
      t.deepEqual(item(kind, Buffer.from(bytes)), Buffer.from(bytes), `${kind} ${bytes.join(',')}`)
    }
    t.is(item(kind, Buffer.from('a\uFFFDb é€𝄞')), 'a\uFFFDb é€𝄞', kind)
    t.is(item(kind, Buffer.from('\uFEFFbom')), '\uFEFFbom', `${kind}: a byte order mark is kept`)
  }
})
