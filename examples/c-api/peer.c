/*
 * The C end of the C API check (docs/c-api.md): talks to the Rust program `c-peer`
 * (crates/programs/src/c_peer.rs) over a queue each way, a log, a latest value and a blob.
 *
 * For each round i it receives request i on `requests` (copied, or in place for odd i),
 * checks every byte, replies on `replies` with i, the request's FNV-1a 32 and the request
 * XORed with 0xa5 (copied, or written in place when i is not a multiple of 3), appends i
 * and the FNV to the `events` log, and reads the newest `setpoint` (checking it is intact
 * and never goes back). At the end it waits for the last setpoint and publishes a summary
 * blob on `config`, which the Rust side checks byte for byte.
 *
 * One source for both platforms, and no C library (it is built -ffreestanding for Xen):
 *   - the emulator (`staticbus run`): define STATICBUS_EMU; main() takes the round count
 *     as its argument; the manifest is the domain's manifest.json; the emulator's
 *     transport is wrapped by this program's own functions (counting hypercalls);
 *   - bare-metal Xen: define STATICBUS_XEN and put the domain's generated manifest.h on
 *     the include path; the runtime calls sb_main(); the count is C_PEER_COUNT.
 */
#include <stddef.h>
#include <stdint.h>

#include "staticbus.h"
#if defined(STATICBUS_XEN)
#include "manifest.h"
#endif

#ifndef C_PEER_COUNT
#define C_PEER_COUNT 200
#endif

#define PATTERN 1000

static struct sb_domain dom;
static struct sb_queue_rx requests;
static struct sb_queue_tx replies;
static struct sb_log_writer events;
static struct sb_latest_reader setpoint;
static struct sb_blob_writer config;
static struct sb_link link;

/* ---- output without a C library ---- */

static size_t length(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

static void put(const char *s)
{
	sb_console_write(&dom, (const uint8_t *)s, length(s));
}

static void put_u64(uint64_t v)
{
	char digits[21];
	int at = 20;
	digits[at] = 0;
	do {
		digits[--at] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	put(&digits[at]);
}

static int fail(const char *what, uint64_t round, enum sb_status st)
{
	put("RESULT FAIL c: ");
	put(what);
	put(" (round ");
	put_u64(round);
	put("): ");
	put(st == SB_OK ? "wrong data" : sb_strerror(st));
	put("\n");
	return 1;
}

#define CHECK(what, round, call)                                                           \
	do {                                                                                   \
		enum sb_status st_ = (call);                                                       \
		if (st_ != SB_OK)                                                                  \
			return fail(what, round, st_);                                                 \
	} while (0)

/* ---- the data both sides agree on (crates/programs/src/c_peer.rs) ---- */

static size_t request_len(uint64_t i)
{
	return 1 + (size_t)((i * 37) % 300);
}

static uint8_t request_byte(uint64_t i, size_t k)
{
	return (uint8_t)(i * 31 + k * 7 + 1);
}

static uint32_t fnv1a32(const uint8_t *p, size_t n)
{
	uint32_t h = 0x811c9dc5u;
	for (size_t k = 0; k < n; k++)
		h = (h ^ p[k]) * 0x01000193u;
	return h;
}

static void put_le(uint8_t *p, uint64_t v, int bytes)
{
	for (int k = 0; k < bytes; k++)
		p[k] = (uint8_t)(v >> (8 * k));
}

static uint64_t get_le(const uint8_t *p, int bytes)
{
	uint64_t v = 0;
	for (int k = 0; k < bytes; k++)
		v |= (uint64_t)p[k] << (8 * k);
	return v;
}

/* ---- zero-copy callbacks ---- */

struct request {
	uint8_t bytes[300];
	size_t len;
	int too_long;
};

/* Copies the message out of shared memory first: a hostile producer could change it
 * while it is read, so only the copy is checked and used. */
static void take_request(void *ctx, const uint8_t *payload, size_t len)
{
	struct request *r = ctx;
	r->too_long = len > sizeof r->bytes;
	r->len = r->too_long ? 0 : len;
	for (size_t k = 0; k < r->len; k++)
		r->bytes[k] = payload[k];
}

struct reply {
	const struct request *req;
	uint64_t round;
	uint32_t fnv;
};

static void write_reply(void *ctx, uint8_t *payload, size_t len)
{
	const struct reply *r = ctx;
	put_le(payload, r->round, 4);
	put_le(payload + 4, r->fnv, 4);
	for (size_t k = 8; k < len; k++)
		payload[k] = r->req->bytes[k - 8] ^ 0xa5;
}

/* A setpoint: its stamp and 3 * stamp + 1, never going back. */
static int check_setpoint(const uint8_t *v, const struct sb_latest_sample *s, uint64_t *last)
{
	uint64_t stamp = get_le(v, 8);
	return s->len == 16 && stamp == s->stamp && get_le(v + 8, 8) == 3 * stamp + 1 &&
	       stamp >= *last && (*last = stamp, 1);
}

static int run(uint64_t count)
{
	static struct request req;
	static uint8_t reply_buf[308];
	static uint8_t summary[16 + PATTERN];
	uint8_t value[16];
	struct sb_latest_sample sample;
	struct sb_link_info info;
	uint64_t last = 0, reads = 0, version = 0;
	uint32_t fnv_xor = 0;

	/* The ends the Rust side initialises first (they wait for it), then ours. */
	CHECK("open requests", 0, sb_queue_rx_open(&requests, &dom, "requests"));
	CHECK("open setpoint", 0, sb_latest_reader_open(&setpoint, &dom, "setpoint"));
	CHECK("open replies", 0, sb_queue_tx_open(&replies, &dom, "replies"));
	CHECK("open events", 0, sb_log_writer_open(&events, &dom, "events"));
	CHECK("open config", 0, sb_blob_writer_open(&config, &dom, "config"));
	/* What the manifest says of `requests`: a queue (protocol 1) this domain consumes
	 * (role 1), one peer, 16 KiB. */
	CHECK("open link", 0, sb_link_open(&link, &dom, "requests"));
	CHECK("link info", 0, sb_link_info(&link, &info));
	if (info.protocol != 1 || info.role != 1 || info.peer_count != 1 || info.region_size != 16384)
		return fail("manifest of requests", 0, SB_OK);
	put("c: all five channels open\n");

	for (uint64_t i = 0; i < count; i++) {
		if (i % 2 == 0) {
			CHECK("receive request", i,
			      sb_queue_recv(&requests, req.bytes, sizeof req.bytes, &req.len));
		} else {
			CHECK("receive request in place", i,
			      sb_queue_recv_in_place(&requests, take_request, &req));
			if (req.too_long)
				return fail("request too long", i, SB_OK);
		}
		if (req.len != request_len(i))
			return fail("request of the wrong length", i, SB_OK);
		for (size_t k = 0; k < req.len; k++)
			if (req.bytes[k] != request_byte(i, k))
				return fail("request with wrong bytes", i, SB_OK);
		uint32_t fnv = fnv1a32(req.bytes, req.len);
		fnv_xor ^= fnv;

		struct reply r = { .req = &req, .round = i, .fnv = fnv };
		if (i % 3 == 0) {
			write_reply(&r, reply_buf, req.len + 8);
			CHECK("send reply", i, sb_queue_send(&replies, reply_buf, req.len + 8));
		} else {
			CHECK("send reply in place", i,
			      sb_queue_send_in_place(&replies, req.len + 8, write_reply, &r));
		}

		uint8_t rec[8];
		put_le(rec, i, 4);
		put_le(rec + 4, fnv, 4);
		CHECK("append event", i, sb_log_append(&events, rec, sizeof rec));

		enum sb_status st = sb_latest_read(&setpoint, value, sizeof value, &sample);
		if (st == SB_OK) {
			reads++;
			if (!check_setpoint(value, &sample, &last))
				return fail("torn or older setpoint", i, SB_OK);
		} else if (st != SB_ERR_EMPTY && st != SB_ERR_CONTENDED) {
			return fail("read setpoint", i, st);
		}
	}
	while (last < count) {
		enum sb_status st =
			sb_latest_read_changed(&setpoint, value, sizeof value, &sample);
		if (st == SB_ERR_CONTENDED)
			continue;
		CHECK("wait for the last setpoint", count, st);
		reads++;
		if (!check_setpoint(value, &sample, &last))
			return fail("torn or older setpoint", count, SB_OK);
	}

	put_le(summary, count, 4);
	put_le(summary + 4, fnv_xor, 4);
	put_le(summary + 8, last, 8);
	for (size_t k = 0; k < PATTERN; k++)
		summary[16 + k] = (uint8_t)(13 * k + count);
	CHECK("publish summary", count, sb_blob_write(&config, summary, sizeof summary, &version));
	if (version != 1)
		return fail("summary version", count, SB_OK);

	put("RESULT PASS c: ");
	put_u64(count);
	put(" requests checked and answered, ");
	put_u64(reads);
	put(" setpoints intact up to ");
	put_u64(last);
	put(", summary published\n");
	return 0;
}

#if defined(STATICBUS_XEN)
int32_t sb_main(void)
{
	enum sb_status st = sb_xen_init(&dom, &sb_manifest);
	if (st != SB_OK)
		return 2; /* no console without a domain: the runtime reports the crash */
	return run(C_PEER_COUNT);
}
#else
/* The transport is the integrator's: here the emulator's, wrapped by functions of this
 * program that count the hypercalls the library makes before passing them on. */
static struct sb_transport emu;
static uint64_t evtchn_calls, sched_calls;

static int64_t count_evtchn(void *ctx, uint32_t cmd, void *arg)
{
	evtchn_calls++;
	return emu.event_channel_op(ctx, cmd, arg);
}

static int64_t count_sched(void *ctx, uint32_t cmd, void *arg)
{
	sched_calls++;
	return emu.sched_op(ctx, cmd, arg);
}

int main(int argc, char **argv)
{
	uint64_t count = 0;
	if (argc > 1)
		for (const char *p = argv[1]; *p >= '0' && *p <= '9'; p++)
			count = count * 10 + (uint64_t)(*p - '0');
	if (count == 0)
		count = C_PEER_COUNT;
	if (sb_emu_transport(&emu) != SB_OK)
		return 2;
	struct sb_transport counted = emu;
	counted.event_channel_op = count_evtchn;
	counted.sched_op = count_sched;
	if (sb_emu_init_with(&dom, &counted) != SB_OK)
		return 2;
	int r = run(count);
	put("c: ");
	put_u64(evtchn_calls);
	put(" event-channel and ");
	put_u64(sched_calls);
	put(" scheduler hypercalls through this program's transport\n");
	return r;
}
#endif
