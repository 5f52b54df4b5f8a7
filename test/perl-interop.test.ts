// Node and real Perl read and write the same sessions on the same memcached: one test per row of
// issue 14's table, both directions. The Perl side is a few lines calling Cache::Memcached,
// Storable and JSON exactly as Apache::Session::Memorycached, Apache::Session::Serialize::JSON and
// Lemonldap::NG's Apache::Session::Memcached do.
import anyTest, { type ExecutionContext, type TestFn } from 'ava'
import { findSessions, destroySessions, memcachedStore, md5Hex, save, tieSession, untie, updateSession } from '../src/index.js'
import { newId } from '../src/ids.js'
import { storable } from '../src/storable.js'
import type { MemcachedStoreOptions } from '../src/stores/memcached.js'
import { useMemcached, type MemcachedServer } from './helpers/memcached.js'
import { perl, requirePerl } from './helpers/perl.js'

const test = anyTest as TestFn<unknown>
type Any = Record<string, any>

test.before(() => requirePerl()) // no Perl: every test here fails with how to install it, none skips

const WIDE = 'José 中文 😀'

/** A memcached store closed in teardown. */
function open(t: ExecutionContext, options: MemcachedStoreOptions) {
  const store = memcachedStore({ requestTimeout: 5000, ...options })
  t.teardown(() => store.close())
  return store
}

/** The flags memcached holds `key` with. */
async function flagsOf(server: MemcachedServer, key: string): Promise<number> {
  const reply = await server.raw(`get ${key}\r\n`)
  return Number(/^VALUE \S+ (\d+) /.exec(reply)?.[1] ?? NaN)
}

/** Perl: Memorycached's save (`$m->set($id, \%data)`, so nfreeze with flags 1) and its index key. */
const MEMORYCACHED_WRITE = `my $a = args(); my $m = Cache::Memcached->new({ servers => $a->{servers} });
my %data = (_session_id => $a->{id}, uid => $a->{uid}, name => "José 中文 😀", n => 42, ns => '42', f => 1.5,
  nested => { a => { b => [1, 2, { c => undef }] } }, u => undef, yes => JSON::PP::true, no => JSON::PP::false);
$data{uid_MD5} = md5_hex($a->{uid});
$m->set($a->{id}, \\%data, 3600) or die "set"; $m->set(md5_hex($a->{uid}), $a->{id}, 3600) or die "set index"; out(1)`

/** Perl: Memorycached's read: Cache::Memcached thaws a flags-1 value into a hash reference. */
const MEMORYCACHED_READ = `my $a = args(); my $m = Cache::Memcached->new({ servers => $a->{servers} });
my $v = $m->get($a->{id}); die "not a hash: " . ($v // 'undef') unless ref $v eq 'HASH'; out($v)`

/** What Perl's data above is in Node: floats are Perl's strings in nfreeze, JSON::PP booleans booleans. */
const PERL_DATA = { name: WIDE, n: 42, ns: '42', f: '1.5', nested: { a: { b: [1, 2, { c: null }] } }, u: null, yes: true, no: false }

test('Memorycached (Storable, flags 1): Node reads the Perl session, writes it back with flags 1, Perl reads it', async (t) => {
  const server = await useMemcached(t)
  const store = open(t, { servers: server.address })
  const id = newId()
  await perl(MEMORYCACHED_WRITE, { servers: [server.address], id, uid: 'dwho' })
  const s = await tieSession<Any>(id, { store })
  t.like({ ...s }, PERL_DATA)
  s.cart = { items: [{ sku: 42, label: WIDE }] }
  s.n = 43
  await untie(s)
  t.is(await flagsOf(server, id), 1, 'written back in the form it was read')
  const back = await perl<Any>(MEMORYCACHED_READ, { servers: [server.address], id })
  t.like(back, { ...PERL_DATA, n: 43, cart: { items: [{ sku: 42, label: WIDE }] }, uid: 'dwho' })
})

test('Memorycached reads a session Node wrote with the storable serializer: numbers vs strings, nesting, undef, booleans', async (t) => {
  const server = await useMemcached(t)
  const store = open(t, { servers: server.address })
  const s = await tieSession<Any>(undefined, { store, serializer: storable })
  Object.assign(s, { name: WIDE, n: 42, ns: '42', f: 1.5, big: 2 ** 40, nested: { a: [1, { b: null }] }, u: null, yes: true, no: false })
  t.is(s.f, '1.5', 'the object shows what Storable keeps')
  await untie(s)
  t.is(await flagsOf(server, s._session_id), 1)
  const back = await perl<Any>(MEMORYCACHED_READ, { servers: [server.address], id: s._session_id })
  t.deepEqual(back, {
    _session_id: s._session_id,
    _utime: s._utime,
    name: WIDE,
    n: 42,
    ns: '42',
    f: '1.5',
    big: '1099511627776',
    nested: { a: [1, { b: null }] },
    u: null,
    yes: true,
    no: false,
  })
})

/** Perl: Apache::Session::Serialize::JSON's save and read through Cache::Memcached. */
const JSON_WRITE = `my $a = args(); my $m = Cache::Memcached->new({ servers => $a->{servers} });
my $s = { data => $a->{data} }; Apache::Session::Serialize::JSON::serialize($s); $m->set($a->{id}, $s->{serialized}) or die; out(1)`
const JSON_READ = `my $a = args(); my $m = Cache::Memcached->new({ servers => $a->{servers} });
my $s = { serialized => $m->get($a->{id}) }; Apache::Session::Serialize::JSON::unserialize($s); out($s->{data})`

test('Perl JSON readers: Node writes ASCII-only JSON, so "José 中文 😀" arrives whole; a Perl save is read back whole', async (t) => {
  const server = await useMemcached(t)
  const store = open(t, { servers: server.address })
  const s = await tieSession<Any>(undefined, { store })
  Object.assign(s, { name: WIDE, n: 42, ns: '42', f: 1.5, nested: { a: [1, null] }, yes: true, no: false })
  await untie(s)
  t.regex(await server.raw(`get ${s._session_id}\r\n`), /^VALUE \S+ 0 \d+\r\n[\x20-\x7e]+\r\nEND\r\n$/, 'ASCII only, flags 0')
  const read = await perl<Any>(JSON_READ, { servers: [server.address], id: s._session_id })
  t.deepEqual(read, {
    _session_id: s._session_id,
    _utime: s._utime,
    name: WIDE,
    n: 42,
    ns: '42',
    f: 1.5,
    nested: { a: [1, null] },
    yes: true,
    no: false,
  })
  // Perl saves it (to_json writes the wide string's UTF-8 bytes); Node reads it whole and writes it back as ASCII
  await perl(JSON_WRITE, { servers: [server.address], id: s._session_id, data: { ...read, perl: WIDE } })
  const again = await tieSession<Any>(s._session_id, { store })
  t.is(again.name, WIDE)
  t.is(again.perl, WIDE)
  again.node = WIDE
  await untie(again)
  t.like(await perl<Any>(JSON_READ, { servers: [server.address], id: s._session_id }), { name: WIDE, perl: WIDE, node: WIDE })
})

/** Perl: Lemonldap::NG's Apache::Session::Memcached (Serialize::Storable): nfreeze stored as a plain string, flags 0. */
const LLNG_WRITE = `my $a = args(); my $m = Cache::Memcached->new({ servers => $a->{servers} });
$m->set($a->{id}, nfreeze({ _session_id => $a->{id}, _session_kind => 'SSO', _utime => 1795986494, uid => 'dwho', cn => "José 中文" })) or die; out(1)`
const LLNG_READ = `my $a = args(); my $m = Cache::Memcached->new({ servers => $a->{servers} });
my $v = $m->get($a->{id}); die "not a plain string" if ref $v; out(thaw($v))`

test('Lemonldap::NG (Storable as a flags-0 string): Node reads it, writes it back as a flags-0 string, Perl thaws it', async (t) => {
  const server = await useMemcached(t)
  const store = open(t, { servers: server.address })
  const id = newId()
  await perl(LLNG_WRITE, { servers: [server.address], id })
  await updateSession<Any>(
    id,
    (s) => {
      t.like(s, { _session_kind: 'SSO', _utime: 1795986494, uid: 'dwho', cn: 'José 中文' })
      s.app = WIDE
    },
    { store },
  )
  t.is(await flagsOf(server, id), 0)
  t.like(await perl<Any>(LLNG_READ, { servers: [server.address], id }), {
    _session_kind: 'SSO',
    _utime: 1795986494,
    cn: 'José 中文',
    app: WIDE,
  })
})

/** Perl: Cache::Memcached with compress_threshold gzips big values: flags 2 (a JSON string), flags 3 (Storable). */
const GZIP_WRITE = `my $a = args(); my $m = Cache::Memcached->new({ servers => $a->{servers}, compress_threshold => 1000 });
my %data = (_session_id => $a->{id}, pad => 'x' x 5000, name => "José 中文 😀");
$m->set($a->{id}, $a->{storable} ? \\%data : JSON::PP->new->ascii->encode(\\%data)) or die; out(1)`
const GZIP_READ = `my $a = args(); my $m = Cache::Memcached->new({ servers => $a->{servers} });
my $v = $m->get($a->{id}); out(ref $v ? $v : JSON::PP->new->decode($v))`

for (const [form, flags] of [
  ['JSON', 2],
  ['Storable', 3],
] as const) {
  test(`gzip (flags ${flags}, ${form}): Node reads it and writes it back gzipped with flags ${flags}; Perl reads it`, async (t) => {
    const server = await useMemcached(t)
    const store = open(t, { servers: server.address })
    const id = newId()
    await perl(GZIP_WRITE, { servers: [server.address], id, storable: form === 'Storable' })
    t.is(await flagsOf(server, id), flags)
    const s = await tieSession<Any>(id, { store })
    t.is(s.pad.length, 5000)
    t.is(s.name, WIDE)
    s.node = WIDE
    await untie(s)
    t.is(await flagsOf(server, id), flags)
    t.like(await perl<Any>(GZIP_READ, { servers: [server.address], id }), { name: WIDE, node: WIDE })
  })
}

test('Memorycached index: findSessions counts md5_hex(uid) -> id; a Node login then a Perl login are both found, and destroyed', async (t) => {
  const server = await useMemcached(t)
  const store = open(t, { servers: server.address })
  const uid = `dwho-${newId().slice(0, 6)}`
  const node = await tieSession<Any>(undefined, { store, principal: 'uid' })
  node.uid = uid
  await untie(node)
  const perlId = newId()
  await perl(MEMORYCACHED_WRITE, { servers: [server.address], id: perlId, uid })
  t.deepEqual(await findSessions(uid, { store, principal: 'uid' }), [perlId, node._session_id])
  // only Perl's index: still found
  const alone = `solo-${newId().slice(0, 6)}`
  const soloId = newId()
  await perl(MEMORYCACHED_WRITE, { servers: [server.address], id: soloId, uid: alone })
  t.deepEqual(await findSessions(alone, { store, principal: 'uid' }), [soloId])
  t.is(await destroySessions(uid, { store, principal: 'uid' }), 2)
  t.deepEqual(await findSessions(uid, { store, principal: 'uid' }), [])
  t.is(await store.get(perlId), undefined)
  t.is(md5Hex(uid).length, 32)
})

test('local servers: Node writes go to local too, and a Perl reader of the local server reads the same session', async (t) => {
  const [principal, local] = await Promise.all([useMemcached(t), useMemcached(t)])
  const store = open(t, { servers: principal.address, local: local.address })
  const id = newId()
  await perl(MEMORYCACHED_WRITE, { servers: [principal.address], id, uid: 'dwho' })
  const s = await tieSession<Any>(id, { store })
  s.node = WIDE
  await save(s)
  // Memorycached reads its local server first: the copy is Storable with the tag above flag bit 0
  t.is((await flagsOf(local, id)) & 3, 1)
  t.like(await perl<Any>(MEMORYCACHED_READ, { servers: [local.address], id }), { node: WIDE, name: WIDE })
  await untie(s)
})
