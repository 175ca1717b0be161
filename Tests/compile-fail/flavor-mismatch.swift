// A pointer protected by memb read inside a qsbr read section: a grace
// period of memb would not wait for this reader (the 2018 fs/aio bug).
// expect-error: cannot convert value of type 'ReadSection<QuiescentStateRCU>' to expected argument type 'ReadSection<MembarrierRCU>'
import URCU

final class Config: Sendable { let limit = 1 }

func mismatched(_ pointer: borrowing RCUPointer<Config, MembarrierRCU>) -> Int? {
    QuiescentStateRCU.read { section in
        pointer.dereference(in: section) { $0?.limit }
    }
}
