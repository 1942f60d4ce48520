/* cache_fixture: see cache_fixture.h. */
#include "cache_fixture.h"

struct h_cluster cl;
kvfs_t *kv;

void setup1(void)
{
	struct h_opts o = {.memory = "1536M", .max_value = "1G"};
	h_start(&cl, &o);
	kv = h_client(&cl);
}

void teardown_all(void)
{
	kvfs_close(kv);
	h_stop(&cl);
}
