// The controller's self-signed certificate whatever random bytes its serial number is drawn from: a positive DER INTEGER
// with no redundant leading zero (a 0x00 before a byte under 0x80 is "illegal padding" and the certificate unreadable,
// which failed about one first start in 500), accepted by X509Certificate and by a TLS server.
import assert from 'node:assert/strict';
import { createSecureContext } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { derInteger, generateSelfSignedCert } from '../../controller/tls/selfsigned.js';

const random = (...head: number[]): Buffer => Buffer.concat([Buffer.from(head), Buffer.alloc(16 - head.length, 0x5a)]);

describe('self-signed certificate serial numbers', () => {
  it('encodes an INTEGER in the fewest octets, with a zero first only before a set top bit', () => {
    const hex = (bytes: number[]): string => derInteger(Buffer.from(bytes)).toString('hex');
    assert.equal(hex([0x00, 0x12, 0x34]), '02021234');
    assert.equal(hex([0x00, 0x00, 0x01]), '020101');
    assert.equal(hex([0x00, 0x00]), '020100');
    assert.equal(hex([]), '020100');
    assert.equal(hex([0x80, 0x01]), '0203008001');
    assert.equal(hex([0x00, 0x80]), '02020080');
    assert.equal(hex([0x7f]), '02017f');
  });

  const cases: [string, Buffer][] = [
    ['a zero byte before a byte under 0x80 (the failure)', random(0x00, 0x12)],
    ['two zero bytes first', random(0x00, 0x00, 0x01)],
    ['every byte zero', Buffer.alloc(16)],
    ['the top bit set', random(0x80)],
    ['every byte 0xff', Buffer.alloc(16, 0xff)],
    ['a zero byte before a byte of 0x80 or more', random(0x00, 0x80)],
  ];
  for (const [what, bytes] of cases) {
    it(`draws a valid positive serial from ${what}`, () => {
      const c = generateSelfSignedCert(['localhost'], 30, new Date(), bytes);
      const x = new X509Certificate(c.certPem);
      assert.ok(x.verify(x.publicKey));
      const serial = BigInt(`0x${x.serialNumber}`);
      assert.ok(serial > 0n, `positive: ${x.serialNumber}`);
      assert.ok(x.serialNumber.length <= 40, 'at most 20 octets');
      assert.doesNotThrow(() => createSecureContext({ cert: c.certPem, key: c.keyPem }));
    });
  }

  it('keeps serials distinct across draws', () => {
    const serials = new Set(Array.from({ length: 20 }, () => new X509Certificate(generateSelfSignedCert(['localhost'], 30).certPem).serialNumber));
    assert.equal(serials.size, 20);
  });
});
