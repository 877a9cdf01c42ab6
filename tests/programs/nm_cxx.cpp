// nm_cxx: the C++ runtime's use of the allocator, run plain and under LD_PRELOAD by the
// integration tests, which compare the two outputs.
//
//   nm_cxx [THREADS [ROUNDS]]      (defaults: 4 threads, 40 rounds)
//
// Threads build and destroy std::vector / std::map / std::unordered_map / std::string /
// std::shared_ptr, hand objects to each other through a queue (so they are destroyed on
// another thread than the one that built them), and allocate over-aligned types with
// new/delete and new[]/delete[] (operator new(size_t, align_val_t), sized and aligned
// delete). Every result feeds a checksum that depends only on the arguments; it is printed
// at the end. A wrong alignment or a content mismatch is printed to stderr and makes the
// exit status 1.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

std::atomic<unsigned long> g_failures{0};

void fail(const char *what, unsigned long a = 0, unsigned long b = 0) {
  if (g_failures.fetch_add(1) < 50) std::fprintf(stderr, "nm_cxx: FAILED: %s (%lu, %lu)\n", what, a, b);
}

struct Rng {
  std::uint64_t s;
  explicit Rng(std::uint64_t seed) : s(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  unsigned below(unsigned n) { return static_cast<unsigned>(next() % n); }
};

inline std::uint64_t mix(std::uint64_t h, std::uint64_t v) {
  h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
  return h * 0xff51afd7ed558ccdull;
}

std::uint64_t hash_str(const std::string &s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

template <std::size_t A> void check_align(const void *p, const char *what) {
  if ((reinterpret_cast<std::uintptr_t>(p) & (A - 1)) != 0)
    fail(what, reinterpret_cast<std::uintptr_t>(p) & (A - 1), A);
}

struct alignas(64) Line {
  std::uint64_t v[8];
  explicit Line(std::uint64_t x = 0) {
    for (int i = 0; i < 8; i++) v[i] = x * 8 + static_cast<unsigned>(i);
  }
  std::uint64_t sum() const {
    std::uint64_t s = 0;
    for (auto x : v) s = mix(s, x);
    return s;
  }
};
static_assert(alignof(Line) == 64, "Line is over-aligned");

struct alignas(4096) Page {
  unsigned char bytes[4096];
  explicit Page(unsigned char c = 0) { std::memset(bytes, c, sizeof bytes); }
  bool uniform(unsigned char c) const {
    for (auto b : bytes)
      if (b != c) return false;
    return true;
  }
};
static_assert(alignof(Page) == 4096, "Page is over-aligned");

// A polymorphic object with a string member, destroyed through shared_ptr on any thread.
struct Node {
  std::string name;
  std::vector<int> data;
  std::map<int, std::string> tags;
  virtual ~Node() = default;
  virtual std::uint64_t digest() const {
    std::uint64_t h = hash_str(name);
    for (int x : data) h = mix(h, static_cast<std::uint64_t>(x));
    for (auto &kv : tags) h = mix(mix(h, static_cast<std::uint64_t>(kv.first)), hash_str(kv.second));
    return h;
  }
};

struct BigNode : Node {
  std::unique_ptr<Line[]> lines;
  std::size_t count = 0;
  std::uint64_t digest() const override {
    std::uint64_t h = Node::digest();
    for (std::size_t i = 0; i < count; i++) h = mix(h, lines[i].sum());
    return h;
  }
};

// Objects in flight between threads; each carries its expected digest.
struct Parcel {
  std::shared_ptr<Node> node;
  std::uint64_t expect;
  unsigned seq;
};

class Mailbox {
 public:
  void put(Parcel p) {
    {
      std::lock_guard<std::mutex> g(m_);
      q_.push_back(std::move(p));
    }
    cv_.notify_one();
  }
  bool take(Parcel &out) {
    std::unique_lock<std::mutex> g(m_);
    cv_.wait(g, [this] { return !q_.empty() || closed_; });
    if (q_.empty()) return false;
    out = std::move(q_.front());
    q_.pop_front();
    return true;
  }
  void close() {
    {
      std::lock_guard<std::mutex> g(m_);
      closed_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<Parcel> q_;
  bool closed_ = false;
};

std::shared_ptr<Node> make_node(Rng &r, unsigned seq) {
  std::shared_ptr<Node> n;
  if (r.below(4) == 0) {
    auto b = std::make_shared<BigNode>();
    b->count = 1 + r.below(64);
    b->lines.reset(new Line[b->count]);   // new[] of an over-aligned type
    check_align<64>(b->lines.get(), "new Line[] alignment");
    for (std::size_t i = 0; i < b->count; i++) b->lines[i] = Line(seq * 100 + i);
    n = b;
  } else {
    n = std::make_shared<Node>();
  }
  n->name = "node-" + std::to_string(seq) + std::string(r.below(200), static_cast<char>('a' + seq % 26));
  unsigned len = r.below(2000);
  n->data.reserve(r.below(2) ? len : 0);
  for (unsigned i = 0; i < len; i++) n->data.push_back(static_cast<int>(r.below(1000000)));
  unsigned tags = r.below(40);
  for (unsigned i = 0; i < tags; i++) n->tags[static_cast<int>(r.below(1000))] = std::to_string(r.next());
  return n;
}

// One round of container work on this thread; returns a digest.
std::uint64_t container_round(Rng &r, unsigned round) {
  std::uint64_t h = round;

  // vector growth and shrink
  std::vector<std::uint64_t> v;
  unsigned n = 1000 + r.below(50000);
  for (unsigned i = 0; i < n; i++) v.push_back(r.next() % 100000);
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  v.shrink_to_fit();
  for (auto x : v) h = mix(h, x);

  // ordered and unordered maps of strings
  std::map<std::string, unsigned> m;
  std::unordered_map<std::uint64_t, std::string> um;
  for (unsigned i = 0; i < 3000; i++) {
    std::string k = std::to_string(r.below(5000));
    m[k] += i;
    um.emplace(r.next() % 7000, k + "/" + std::to_string(i));
  }
  for (auto &kv : m) h = mix(mix(h, hash_str(kv.first)), kv.second);
  std::uint64_t usum = 0;   // unordered: combine order-independently
  for (auto &kv : um) usum += mix(kv.first, hash_str(kv.second));
  h = mix(h, usum);
  for (unsigned i = 0; i < 1000; i++) um.erase(r.next() % 7000);
  h = mix(h, um.size());
  um.rehash(0);

  // strings: growth by append, then small strings (SSO and heap)
  std::string s;
  for (unsigned i = 0; i < 5000; i++) s += static_cast<char>('A' + r.below(26));
  h = mix(h, hash_str(s));
  std::vector<std::string> words;
  for (unsigned i = 0; i < 2000; i++) words.emplace_back(r.below(64), static_cast<char>('a' + r.below(26)));
  std::sort(words.begin(), words.end());
  for (auto &w : words) h = mix(h, hash_str(w));

  // list and set nodes
  std::list<std::string> lst;
  std::set<unsigned> st;
  for (unsigned i = 0; i < 2000; i++) {
    lst.push_back(std::to_string(i));
    st.insert(r.below(100000));
  }
  lst.remove_if([](const std::string &x) { return x.size() % 2 == 0; });
  h = mix(mix(h, lst.size()), st.size());

  // over-aligned objects with new/delete (aligned new, sized + aligned delete)
  std::vector<Line *> lines;
  for (unsigned i = 0; i < 200; i++) {
    Line *l = new Line(round * 1000 + i);
    check_align<64>(l, "new Line alignment");
    lines.push_back(l);
  }
  for (Line *l : lines) {
    h = mix(h, l->sum());
    delete l;
  }
  for (unsigned i = 0; i < 8; i++) {
    unsigned char c = static_cast<unsigned char>(r.below(256));
    Page *p = new Page(c);
    check_align<4096>(p, "new Page alignment");
    if (!p->uniform(c)) fail("Page content", c, i);
    h = mix(h, p->bytes[4095]);
    delete p;
  }
  unsigned np = 1 + r.below(4);
  Page *pages = new Page[np];
  check_align<4096>(pages, "new Page[] alignment");
  for (unsigned i = 0; i < np; i++)
    if (!pages[i].uniform(0)) fail("Page[] content", i, np);
  delete[] pages;

  // a vector of over-aligned elements (std::allocator uses aligned operator new)
  std::vector<Line> vl;
  for (unsigned i = 0; i < 100 + r.below(400); i++) vl.emplace_back(i);
  check_align<64>(vl.data(), "vector<Line> alignment");
  for (auto &l : vl) h = mix(h, l.sum());
  return h;
}

}  // namespace

int main(int argc, char **argv) {
  unsigned threads = argc > 1 ? static_cast<unsigned>(std::strtoul(argv[1], nullptr, 0)) : 4;
  unsigned rounds = argc > 2 ? static_cast<unsigned>(std::strtoul(argv[2], nullptr, 0)) : 40;
  if (threads < 1 || threads > 64) {
    std::fprintf(stderr, "usage: nm_cxx [THREADS(1..64) [ROUNDS]]\n");
    return 2;
  }

  std::vector<Mailbox> boxes(threads);
  std::vector<std::uint64_t> local(threads), received(threads);
  std::vector<unsigned long> received_count(threads);
  std::atomic<unsigned long> mismatches{0};

  // Consumers: each thread has one, taking the parcels that the other threads send.
  std::vector<std::thread> consumers;
  for (unsigned t = 0; t < threads; t++)
    consumers.emplace_back([&, t] {
      Parcel p;
      std::uint64_t acc = 0;
      unsigned long cnt = 0;
      while (boxes[t].take(p)) {
        std::uint64_t d = p.node->digest();
        if (d != p.expect) mismatches++;
        acc += mix(d, p.seq);   // arrival order varies: combine with +
        cnt++;
        p.node.reset();         // the last reference dies here, on another thread
      }
      received[t] = acc;
      received_count[t] = cnt;
    });

  std::vector<std::thread> producers;
  for (unsigned t = 0; t < threads; t++)
    producers.emplace_back([&, t] {
      Rng r(0x1234 + t);
      std::uint64_t h = t;
      std::vector<std::shared_ptr<Node>> keep;
      for (unsigned round = 0; round < rounds; round++) {
        h = mix(h, container_round(r, round));
        for (unsigned i = 0; i < 50; i++) {
          unsigned seq = (t * rounds + round) * 50 + i;
          auto node = make_node(r, seq);
          std::uint64_t d = node->digest();
          if (r.below(3) == 0) keep.push_back(node);   // shared between two threads
          boxes[(t + 1 + r.below(threads)) % threads].put(Parcel{std::move(node), d, seq});
        }
        if (keep.size() > 100) {
          for (auto &k : keep) h = mix(h, k->digest());
          keep.clear();
        }
      }
      for (auto &k : keep) h = mix(h, k->digest());
      local[t] = h;
    });
  for (auto &th : producers) th.join();
  for (auto &b : boxes) b.close();
  for (auto &th : consumers) th.join();

  std::uint64_t checksum = 0, in_flight = 0;
  unsigned long parcels = 0;
  for (unsigned t = 0; t < threads; t++) {
    checksum = mix(checksum, local[t]);
    in_flight += received[t];
    parcels += received_count[t];
  }
  checksum = mix(checksum, in_flight);
  if (mismatches != 0) fail("parcel digest changed in flight", mismatches.load(), parcels);
  if (parcels != static_cast<unsigned long>(threads) * rounds * 50) fail("parcels lost", parcels, 0);

  std::printf("nm_cxx: threads=%u rounds=%u parcels=%lu checksum=%016llx failures=%lu %s\n", threads,
              rounds, parcels, static_cast<unsigned long long>(checksum), g_failures.load(),
              g_failures.load() ? "FAILED" : "OK");
  return g_failures.load() ? 1 : 0;
}
