// Thin Verilator harness for whole-network runs of mars_top (no cocotb, no Python per
// cycle): the transport of mars.tb.native.NativeTransport, driven by the host driver
// (mars.sw.host.HostDriver).  Verilator spells the ports with "__" as "___05F".
// It reads commands from stdin (or from the file named by its argument):
//   W <hex>        one host write (the host word in hex)
//   R <hex>        one host read; prints "R <hex>" with the answer
//   S <budget>     pulse start, run until done or for at most <budget> cycles; prints
//                  "S <cycles> <status>" or "S timeout <status>", where <status> is the
//                  top's busy | done << 1 | error << 2 (mars.contract.host.Status)
// and prints "END <cycles simulated> <seconds>" at the end of its input.  Answers are
// flushed whenever the harness is about to wait for input, so a driver may wait for them.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "Vmars_top.h"
#include "verilated.h"

static Vmars_top* top;
static uint64_t cycles = 0;

static void tick() {
    top->clk = 0;
    top->eval();
    top->clk = 1;
    top->eval();
    cycles++;
}

// Fill a Verilator wide or narrow signal from a hex string (most significant digit first).
template <typename T>
static void set_hex(T& signal, const std::string& hex, int words) {
    std::vector<uint32_t> w(words, 0);
    int bit = 0;
    for (int i = (int)hex.size() - 1; i >= 0; --i, bit += 4) {
        char c = hex[i];
        uint32_t v = (c >= '0' && c <= '9') ? c - '0' : (c | 0x20) - 'a' + 10;
        if (bit / 32 < words) w[bit / 32] |= v << (bit % 32);
    }
    if constexpr (sizeof(T) <= 8) {
        uint64_t value = w[0] | (words > 1 ? (uint64_t)w[1] << 32 : 0);
        signal = (T)value;
    } else {
        for (int i = 0; i < words; ++i) signal[i] = w[i];
    }
}

template <typename T>
static std::string get_hex(const T& signal, int words) {
    std::ostringstream out;
    out << std::hex;
    if constexpr (sizeof(T) <= 8) {
        out << (uint64_t)signal;
    } else {
        bool started = false;
        for (int i = words - 1; i >= 0; --i) {
            char buf[16];
            std::snprintf(buf, sizeof buf, started ? "%08x" : "%x", (unsigned)signal[i]);
            if (started || signal[i] != 0 || i == 0) { out << buf; started = true; }
        }
    }
    return out.str();
}

int main(int argc, char** argv) {
    Verilated::commandArgs(argc, argv);
    std::ios::sync_with_stdio(false);
    std::cin.tie(nullptr);
    std::ifstream file;
    if (argc >= 2 && std::string(argv[1]) != "-") {
        file.open(argv[1]);
        if (!file) { std::cerr << "cannot open " << argv[1] << "\n"; return 2; }
    }
    std::istream& script = file.is_open() ? static_cast<std::istream&>(file) : std::cin;
    top = new Vmars_top;
    const int payload_words = (int)((sizeof(top->host___05Fpayload) + 3) / 4);
    const int read_words = (int)((sizeof(top->host_read___05Fpayload) + 3) / 4);
    top->rst = 1; top->start = 0; top->host___05Fvalid = 0; top->host_read___05Fready = 1;
    for (int i = 0; i < 3; ++i) tick();
    top->rst = 0;
    auto t0 = std::chrono::steady_clock::now();
    std::string op, arg;
    std::string line;
    while (true) {
        // Answers go out before the harness waits for more input (nothing left in the
        // buffer or the pipe), so a driver waiting for them never deadlocks, without a
        // flush per answer.  Whole lines are read so that no newline is left behind.
        if (script.rdbuf()->in_avail() <= 0) std::cout.flush();
        if (!std::getline(script, line)) break;
        std::istringstream words(line);
        if (!(words >> op >> arg)) continue;
        if (op == "W" || op == "R") {
            set_hex(top->host___05Fpayload, arg, payload_words);
            top->host___05Fvalid = 1;
            while (true) { top->eval(); bool ready = top->host___05Fready; tick(); if (ready) break; }
            top->host___05Fvalid = 0;
            if (op == "R") {
                while (true) { top->eval(); if (top->host_read___05Fvalid) break; tick(); }
                std::cout << "R " << get_hex(top->host_read___05Fpayload, read_words) << "\n";
                tick();
            }
        } else if (op == "S") {
            uint64_t budget = std::stoull(arg);
            top->start = 1; tick(); top->start = 0;
            uint64_t n = 0;
            while (!top->done && n < budget) { tick(); ++n; }
            top->eval();
            const unsigned status = (top->busy ? 1u : 0u) | (top->done ? 2u : 0u)
                                    | (top->error ? 4u : 0u);
            if (top->done) std::cout << "S " << n << " " << status << "\n";
            else std::cout << "S timeout " << status << "\n";
        } else {
            std::cerr << "bad script line: " << op << "\n";
            return 2;
        }
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << "END " << cycles << " " << s << std::endl;
    top->final();
    delete top;
    return 0;
}
