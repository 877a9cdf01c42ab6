/* nebula_config_t: presets, the string grammar shared with NEBULA_MEM_CONFIG, validation
 * that names every bad field. */
#include <criterion/criterion.h>
#include <string.h>

#include <nebula/config.h>

Test(config, presets_differ_where_documented) {
  nebula_config_t p, d;
  nebula_config_production(&p);
  nebula_config_development(&d);
  cr_assert_eq(p.preset, NEBULA_PRESET_PRODUCTION);
  cr_assert_eq(d.preset, NEBULA_PRESET_DEVELOPMENT);
  cr_assert_not(p.poison);
  cr_assert_not(p.backtrace);
  cr_assert(d.poison);
  cr_assert(d.backtrace);
  cr_assert_eq(p.capacity, (size_t)1 << 20);
  cr_assert_eq(p.alignment, 16u);
  cr_assert_eq(nebula_config_validate(&p, NULL, 0), 0u);
  cr_assert_eq(nebula_config_validate(&d, NULL, 0), 0u);
}

Test(config, library_keys_parse) {
  nebula_config_t c;
  nebula_config_production(&c);
  nebula_config_problem_t pr[4];
  size_t n = nebula_config_parse("name=requests, capacity=64K,grow=off,thread_safe=on,block_size=48,"
                                 "block_count=100,alignment=64,budget=1M,poison=on,backtrace=1", &c, pr, 4);
  cr_assert_eq(n, 0u, "%s: %s", pr[0].field, pr[0].message);
  cr_assert_str_eq(c.name, "requests");
  cr_assert_eq(c.capacity, 64u << 10);
  cr_assert_not(c.grow);
  cr_assert(c.thread_safe);
  cr_assert_eq(c.block_size, 48u);
  cr_assert_eq(c.block_count, 100u);
  cr_assert_eq(c.alignment, 64u);
  cr_assert_eq(c.budget, 1u << 20);
  cr_assert(c.poison);
  cr_assert(c.backtrace);
  cr_assert_str_eq(c.preload, "");
}

Test(config, preload_keys_are_accepted_and_checked_by_the_preload_parser) {
  nebula_config_t c;
  nebula_config_production(&c);
  nebula_config_problem_t pr[4];
  size_t n = nebula_config_parse("strategy=compact,route=0-256:pool,257-64K:bump,64K-:system,capacity=2M", &c, pr, 4);
  cr_assert_eq(n, 0u, "%s: %s", pr[0].field, pr[0].message);
  cr_assert_str_eq(c.preload, "strategy=compact,route=0-256:pool,257-64K:bump,64K-:system");
  cr_assert_eq(c.capacity, 2u << 20);
  n = nebula_config_parse("strategy=fastest", &c, pr, 4);
  cr_assert_eq(n, 1u);
  cr_assert_str_eq(pr[0].field, "strategy");
  cr_assert(strstr(pr[0].message, "fastest"), "%s", pr[0].message);
}

Test(config, every_bad_field_is_named_and_keeps_its_value) {
  nebula_config_t c;
  nebula_config_production(&c);
  nebula_config_problem_t pr[8];
  size_t n = nebula_config_parse("capacity=lots,alignment=24,grow=maybe,capacty=1M,block_count=0,nokey", &c, pr, 8);
  cr_assert_eq(n, 6u);
  cr_assert_str_eq(pr[0].field, "capacity");
  cr_assert(strstr(pr[0].message, "'lots'"), "%s", pr[0].message);
  cr_assert_str_eq(pr[1].field, "alignment");
  cr_assert_str_eq(pr[2].field, "grow");
  cr_assert_str_eq(pr[3].field, "capacty");
  cr_assert(strstr(pr[3].message, "did you mean 'capacity'"), "%s", pr[3].message);
  cr_assert_str_eq(pr[4].field, "block_count");
  cr_assert(strstr(pr[5].message, "'nokey' is not key=value"), "%s", pr[5].message);
  cr_assert_eq(c.capacity, 1u << 20, "a bad value keeps the previous one");
  cr_assert_eq(c.alignment, 16u);
  cr_assert(c.grow);
  const nebula_error_t *e = nebula_last_error();
  cr_assert_eq(e->code, NEBULA_ERR_CONFIG);
  cr_assert(strstr(e->detail, "capacity") && strstr(e->detail, "6 problems"), "%s", e->detail);
}

Test(config, preset_applies_where_it_appears) {
  nebula_config_t c;
  nebula_config_production(&c);
  cr_assert_eq(nebula_config_parse("poison=off,preset=development", &c, NULL, 0), 0u);
  cr_assert(c.poison, "the preset after poison=off wins");
  cr_assert_eq(nebula_config_parse("preset=development,poison=off", &c, NULL, 0), 0u);
  cr_assert_not(c.poison);
  cr_assert_eq(c.preset, NEBULA_PRESET_DEVELOPMENT);
  cr_assert(strstr(c.preload, "preset=development"), "the preload has presets too: %s", c.preload);
}

Test(config, validate_names_every_bad_field_of_a_hand_filled_struct) {
  nebula_config_t c;
  memset(&c, 0x7f, sizeof c);   /* garbage everywhere */
  c.preset = (nebula_preset_t)7;
  nebula_config_problem_t pr[16];
  size_t n = nebula_config_validate(&c, pr, 16);
  const char *want[] = {"preset", "name", "alignment", "block_count", "preload"};
  for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
    bool found = false;
    for (size_t i = 0; i < n && i < 16; i++) found |= strcmp(pr[i].field, want[w]) == 0;
    cr_assert(found, "no problem named '%s' among %zu", want[w], n);
  }
  nebula_config_production(&c);
  c.block_size = 0;
  c.capacity = 4096;
  c.budget = 1024;
  n = nebula_config_validate(&c, pr, 16);
  cr_assert_eq(n, 2u);
  cr_assert_str_eq(pr[0].field, "block_size");
  cr_assert_str_eq(pr[1].field, "capacity");
}

Test(config, null_arguments_are_errors) {
  cr_assert_eq(nebula_config_parse("capacity=1M", NULL, NULL, 0), 1u);
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_INVALID_ARGUMENT);
  nebula_config_t c;
  nebula_config_production(&c);
  cr_assert_eq(nebula_config_parse(NULL, &c, NULL, 0), 0u, "NULL text: nothing to change");
}
