/*
 * The library reads the manifest header `staticbus build` writes as that header means it:
 * a domain initialised from its generated `sb_manifest` table opens every channel the
 * table lists, and each link reports what the table and the header's macros say.
 * Built and run by crates/cli/tests/capi.rs against the host library, once per domain of
 * a description (-I the domain's folder of the build). The transport is a stand-in: a
 * zeroed shared_info page, one zeroed buffer per region, no hypercalls.
 */
#include <stdio.h>
#include <string.h>

#include "staticbus.h"
#include "manifest.h"

static _Alignas(4096) uint64_t shared_info[512];
static _Alignas(4096) uint8_t memory[SB_REGION_COUNT > 0 ? SB_REGION_COUNT : 1][1 << 20];

static int32_t region(void *ctx, const char *shm_id, uint8_t **base, size_t *len)
{
	(void)ctx;
	for (uint32_t i = 0; i < sb_manifest.region_count; i++) {
		if (strcmp(sb_regions[i].shm_id, shm_id) == 0 && sb_regions[i].size <= sizeof memory[i]) {
			*base = memory[i];
			*len = (size_t)sb_regions[i].size;
			return 0;
		}
	}
	return -1;
}

static int failures;

#define EXPECT(cond)                                                                       \
	do {                                                                                   \
		if (!(cond)) {                                                                     \
			printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                         \
			failures++;                                                                    \
		}                                                                                  \
	} while (0)

int main(void)
{
	static struct sb_domain dom;
	static struct sb_link links[SB_CHANNEL_COUNT > 0 ? SB_CHANNEL_COUNT : 1];
	struct sb_transport t = { .shared_info = shared_info, .region = region };
	uint16_t domid = 0;

	enum sb_status st = sb_domain_init(&dom, &t, &sb_manifest);
	if (st != SB_OK) {
		printf("FAIL sb_domain_init: %s\n", sb_strerror(st));
		return 1;
	}
	EXPECT(sb_domain_id(&dom, &domid) == SB_OK && domid == SB_DOMID);
	for (uint32_t i = 0; i < sb_manifest.channel_count; i++) {
		const struct sb_channel *c = &sb_channels[i];
		struct sb_link_info info;
		st = sb_link_open(&links[i], &dom, c->name);
		if (st != SB_OK) {
			printf("FAIL sb_link_open(%s): %s\n", c->name, sb_strerror(st));
			failures++;
			continue;
		}
		EXPECT(sb_link_info(&links[i], &info) == SB_OK);
		EXPECT(info.protocol == c->protocol);
		EXPECT(info.role == c->role);
		EXPECT(info.index == c->index);
		EXPECT(info.writers == c->writers);
		EXPECT(info.readers == c->readers);
		EXPECT(info.peer_count == c->peer_count);
		EXPECT(info.region_size == c->size);
		EXPECT(info.region != NULL);
		printf("%s: protocol %u role %u index %u of %u writers, %u readers, %u peers, %zu bytes\n",
		       c->name, info.protocol, info.role, info.index, info.writers, info.readers,
		       info.peer_count, info.region_size);
	}
	EXPECT(sb_link_open(&links[0], &dom, "no such channel") == SB_ERR_NO_CHANNEL);
#ifdef SB_REQUESTS_NAME
	/* The macros say the same as the tables (examples/c-api). */
	struct sb_link l;
	struct sb_link_info info;
	EXPECT(sb_link_open(&l, &dom, SB_REQUESTS_NAME) == SB_OK);
	EXPECT(sb_link_info(&l, &info) == SB_OK);
	EXPECT(info.protocol == SB_REQUESTS_PROTOCOL && info.protocol == SB_PROTOCOL_QUEUE);
	EXPECT(info.role == SB_REQUESTS_ROLE);
	EXPECT(info.region_size == SB_REQUESTS_SIZE);
	EXPECT(info.peer_count == SB_REQUESTS_PEER_COUNT);
#endif
	printf("%s: %u channels checked, %d failures\n", SB_DOMAIN, sb_manifest.channel_count,
	       failures);
	return failures != 0;
}
