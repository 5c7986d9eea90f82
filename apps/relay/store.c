/*
 * store.c - the transit relay's usage database (see store.h).
 */
#include "apps/relay/store.h"

#include <string.h>

static const char *const migrations[] = {
    "CREATE TABLE IF NOT EXISTS version (version INTEGER);"
    "INSERT INTO version (version) SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM version);"
    "CREATE TABLE IF NOT EXISTS current (rebooted INTEGER, updated INTEGER, connected INTEGER,"
    " waiting INTEGER, incomplete_bytes INTEGER);"
    "CREATE TABLE IF NOT EXISTS usage (started INTEGER, total_time INTEGER,"
    " waiting_time INTEGER, total_bytes INTEGER, result VARCHAR);"
    "CREATE INDEX IF NOT EXISTS usage_started_index ON usage (started);"
    "CREATE INDEX IF NOT EXISTS usage_result_index ON usage (result);",
};

static const wb_db_op_t ops[TR_OP_COUNT] = {
    [TR_OP_USAGE] = {"usage", "INSERT INTO usage (started, total_time, waiting_time, total_bytes,"
                              " result) VALUES (?1, ?2, ?3, ?4, ?5)"},
    [TR_OP_CURRENT_DEL] = {"current clear", "DELETE FROM current"},
    [TR_OP_CURRENT] = {"current", "INSERT INTO current (rebooted, updated, connected, waiting,"
                                  " incomplete_bytes) VALUES (?1, ?2, ?3, ?4, ?5)"},
};

void tr_store_config(wb_db_config_t *cfg, const char *path)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->path = path;
    cfg->migrations = migrations;
    cfg->n_migrations = sizeof(migrations) / sizeof(migrations[0]);
    cfg->ops = ops;
    cfg->n_ops = TR_OP_COUNT;
}

static uint64_t round_to(uint64_t size, uint64_t step)
{
    return step * (1 + (size - 1) / step);
}

uint64_t tr_blur_size(uint64_t size)
{
    if (size == 0)
        return 0;
    if (size < 1000000u)
        return round_to(size, 10000u);
    if (size < 1000000000u)
        return round_to(size, 1000000u);
    return round_to(size, 100000000u);
}
