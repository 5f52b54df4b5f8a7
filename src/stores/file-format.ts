/**
 * The bytes of a key's file: two slots of equal size, each able to hold one record (a version of
 * the key's item), so that a write can go in place into the slot that does not hold the current
 * record while readers read the current one.
 *
 * A record is a 32-byte head, then the version's bytes, then the value's bytes. The head, little
 * endian: magic `tsf\x01` (4 bytes), crc32 of everything after the crc to the end of the value
 * (4), sequence number (4), value length (4), expiry in ms since the epoch, 0 = never (float64),
 * flags (4), kind (1 byte: 0 = UTF-8 text, 1 = bytes), version length (1), 2 bytes zero.
 *
 * The current record is the valid one with the higher sequence number (a write stores the current
 * one's + 1, wrapping at 2^32). A record that a writer is writing, or that a killed writer left
 * half written, fails its crc32, and the other slot then holds the current record. The file's
 * size is twice the slot size; it never changes while the file is in use: a record that does not
 * fit goes into a new file that replaces this one (rename).
 *
 * The format before this one (a JSON header line, then the value) is still read, and is replaced
 * by this one at the key's next write.
 */
import { crc32 } from 'node:zlib'
import { SessionError } from '../errors.js'

/**
 * One key's stored item. A value of bytes (a Buffer) is kept as bytes, with kind 1; flags other
 * than 0 are kept with it.
 */
export interface Item {
  version: string
  /** ms since the epoch; 0 = never */
  expires: number
  value: string | Buffer
  /** Client flags kept with the value (absent: 0). */
  flags?: number
}

/**
 * A whole record found in a file: its item's version, expiry and flags, its sequence number, the
 * slot (0 or 1) that holds it, and `value()`, which decodes the value (a write that only checks
 * the version never needs it).
 */
export interface Found extends Omit<Item, 'value'> {
  seq: number
  slot: number
  value(): string | Buffer
}

/** The {@link Item} of a found record. */
export function itemOf(found: Found): Item {
  const item: Item = { version: found.version, expires: found.expires, value: found.value() }
  if (found.flags !== undefined) item.flags = found.flags
  return item
}

const MAGIC = 0x01667374 // 'tsf\x01' read as a little-endian uint32
/** Bytes of a record's head. */
export const HEAD = 32
/** Slot sizes are multiples of this: one disk sector. */
const SECTOR = 512

/** The slot size that holds a record of `bytes` with room to grow by a quarter (a session usually grows a little). */
export const slotSizeFor = (bytes: number) => Math.ceil((bytes + (bytes >> 2)) / SECTOR) * SECTOR

/** The record of `item` with sequence number `seq`, ready to be written at the start of a slot. */
export function encode(item: Item, seq: number): Buffer {
  const version = Buffer.from(item.version, 'utf8')
  if (version.length > 255) throw new RangeError('a version is at most 255 bytes') // ours are 16
  const text = typeof item.value === 'string'
  const length = text ? Buffer.byteLength(item.value as string) : item.value.length
  const record = Buffer.allocUnsafe(HEAD + version.length + length)
  record.writeUInt32LE(MAGIC, 0)
  record.writeUInt32LE(seq >>> 0, 8)
  record.writeUInt32LE(length, 12)
  record.writeDoubleLE(item.expires, 16)
  record.writeUInt32LE(item.flags ?? 0, 24)
  record[28] = text ? 0 : 1
  record[29] = version.length
  record.writeUInt16LE(0, 30)
  version.copy(record, HEAD)
  if (text) record.write(item.value as string, HEAD + version.length, 'utf8')
  else (item.value as Buffer).copy(record, HEAD + version.length)
  record.writeUInt32LE(crc32(record.subarray(8)), 4)
  return record
}

/** The record in the slot that starts with `bytes` (more may follow), or undefined if it is not whole. */
export function decodeSlot(bytes: Buffer, slot: number): Found | undefined {
  const length = recordLength(bytes)
  if (length === undefined || length > bytes.length || crc32(bytes.subarray(8, length)) !== bytes.readUInt32LE(4)) return undefined
  const start = HEAD + bytes[29]!
  const found: Found = {
    version: bytes.toString('utf8', HEAD, start),
    expires: bytes.readDoubleLE(16),
    seq: bytes.readUInt32LE(8),
    slot,
    // a copy of the bytes: `bytes` may be a pooled buffer
    value: () => (bytes[28] === 0 ? bytes.toString('utf8', start, length) : Buffer.from(bytes.subarray(start, length))),
  }
  const flags = bytes.readUInt32LE(24)
  if (flags !== 0) found.flags = flags
  return found
}

/** The length of the record whose head starts `head`, or undefined if `head` is not a record's head. */
export function recordLength(head: Buffer): number | undefined {
  return head.length >= HEAD && head.readUInt32LE(0) === MAGIC ? HEAD + head[29]! + head.readUInt32LE(12) : undefined
}

/**
 * The slots in the order to try them: the one whose head has the higher sequence number (wrapping
 * at 2^32) first. If its record is being written over, or a killed writer left it half written,
 * it fails its crc32 and the other one is the current record.
 */
export function newerFirst(head0: Buffer, head1: Buffer): [number, number] {
  if (recordLength(head1) === undefined) return [0, 1]
  if (recordLength(head0) === undefined) return [1, 0]
  return ((head1.readUInt32LE(8) - head0.readUInt32LE(8)) | 0) > 0 ? [1, 0] : [0, 1]
}

/** Whether the file's first bytes are this format's (a record's magic), so that its slots are to be read. */
export const isSlotted = (first: Buffer) => first.length >= 4 && first.readUInt32LE(0) === MAGIC

type Head = { v?: unknown; e?: unknown; b?: unknown; f?: unknown }

/**
 * The {@link Item} in a file of the format before this one (a JSON header line `{"v":version,
 * "e":expires}`, `"b":1` for a value of bytes in base64, `"f"` for flags, then the value);
 * ERR_CORRUPT, naming the key and `file`, if it has no such header.
 */
export function parseLegacy(key: string, file: string, text: string): Item {
  const nl = text.indexOf('\n')
  let head: Head | null = null
  try {
    if (nl >= 0) head = JSON.parse(text.slice(0, nl)) as Head | null
  } catch {
    // not our header: reported as ERR_CORRUPT below
  }
  if (typeof head?.v !== 'string' || typeof head.e !== 'number') throw corrupt(key, file)
  const body = text.slice(nl + 1)
  const item: Item = { version: head.v, expires: head.e, value: head.b === 1 ? Buffer.from(body, 'base64') : body }
  if (typeof head.f === 'number' && head.f !== 0) item.flags = head.f
  return item
}

/** ERR_CORRUPT for the file of `key` that is not a tied-session file (or both of whose records are damaged). */
export function corrupt(key: string, file: string): SessionError {
  return new SessionError('ERR_CORRUPT', `the file of key "${key}" (${file}) is not a tied-session file; delete the key`)
}
