// Verilator harness of the board top (mars.hw.bridge.SerialTop): its UART pins joined to a
// pseudo-terminal, so that the host's serial transport (pyserial, `mars board run`'s code)
// talks to the simulated board as to a USB-serial port.  The host side of the line is an
// 8N1 UART model here: bytes written to the pty are sent on `rx` at DIVISOR cycles a bit,
// bits on `tx` are sampled mid-bit and written back to the pty.
// Prints "PTY <path>" once the pty is open; ends when the host closes it (after it was
// opened once) and prints "END <cycles simulated> <link errors>".
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fcntl.h>
#include <iostream>
#include <poll.h>
#include <termios.h>
#include <unistd.h>

#include "Vmars_serial_top.h"
#include "verilated.h"

#ifndef DIVISOR
#error "build with -DDIVISOR=<cycles per bit>"
#endif

static Vmars_serial_top* top;
static uint64_t cycles = 0;

static void tick() {
    top->clk = 0;
    top->eval();
    top->clk = 1;
    top->eval();
    cycles++;
}

int main(int argc, char** argv) {
    Verilated::commandArgs(argc, argv);
    top = new Vmars_serial_top;
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) {
        std::perror("posix_openpt");
        return 1;
    }
    // Keep a slave descriptor open ourselves: reads on the master then never fail with EIO
    // before the host opens it; the host's close is seen as HUP on a second check below.
    const char* name = ptsname(master);
    int keep = open(name, O_RDWR | O_NOCTTY);
    struct termios raw;
    tcgetattr(keep, &raw);
    cfmakeraw(&raw);
    tcsetattr(keep, TCSANOW, &raw);
    fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
    std::cout << "PTY " << name << std::endl;

    top->rst = 1; top->rx = 1;
    tick(); tick();
    top->rst = 0;

    std::deque<uint8_t> to_board;
    // Host-side transmitter: the bits of the byte in flight.
    int tx_bit = -1, tx_timer = 0; uint16_t tx_shift = 0;
    // Host-side receiver: sampling the board's tx line.
    int rx_bit = -1, rx_timer = 0; uint8_t rx_byte = 0;
    uint64_t quiet = 0;
    unsigned char buffer[4096];
    bool stdin_open = true;
    for (;;) {
        if ((cycles & 255) == 0 || quiet > 200000) {
            struct pollfd fds[2] = {{master, POLLIN, 0}, {0, POLLIN, 0}};
            int wait = (quiet > 200000 && to_board.empty() && tx_bit < 0 && rx_bit < 0) ? 2 : 0;
            poll(fds, stdin_open ? 2 : 1, wait);
            if (fds[0].revents & POLLIN) {
                ssize_t n = read(master, buffer, sizeof buffer);
                for (ssize_t i = 0; i < n; ++i) to_board.push_back(buffer[i]);
                if (n > 0) quiet = 0;
            }
            if (stdin_open && (fds[1].revents & (POLLIN | POLLHUP))) {
                // The test closes our stdin to end the simulation.
                ssize_t n = read(0, buffer, sizeof buffer);
                if (n <= 0) break;
            }
        }
        // Drive rx (host to board).
        if (tx_bit < 0 && !to_board.empty()) {
            tx_shift = (uint16_t)(0x200 | (to_board.front() << 1));
            to_board.pop_front();
            tx_bit = 0; tx_timer = DIVISOR;
        }
        top->rx = tx_bit < 0 ? 1 : (tx_shift >> tx_bit) & 1;
        if (tx_bit >= 0 && --tx_timer == 0) {
            tx_timer = DIVISOR;
            if (++tx_bit == 10) tx_bit = -1;
        }
        tick();
        // Sample tx (board to host): a falling edge starts a byte, bits read mid-bit.
        int line = top->tx;
        if (rx_bit < 0) {
            if (!line) { rx_bit = 0; rx_timer = DIVISOR / 2; rx_byte = 0; }
        } else if (--rx_timer == 0) {
            rx_timer = DIVISOR;
            if (rx_bit >= 1 && rx_bit <= 8) rx_byte |= (uint8_t)(line << (rx_bit - 1));
            if (rx_bit == 9) {
                if (line) {
                    while (write(master, &rx_byte, 1) < 0 && errno == EAGAIN) usleep(100);
                }
                rx_bit = -1;
                quiet = 0;
            } else {
                ++rx_bit;
            }
        }
        ++quiet;
    }
    std::cout << "END " << cycles << " " << (int)top->link_error << std::endl;
    close(keep);
    close(master);
    top->final();
    delete top;
    return 0;
}
