// An RCUReference cannot outlive the read section it was read in: storing
// it where it would be used after the section is refused.
// expect-error: lifetime-dependent variable 'escaped' escapes its scope
import URCU

final class Node: Sendable { let value = 1 }

func escape(_ pointer: borrowing RCUPointer<Node, MembarrierRCU>) -> Int {
    var escaped: RCUReference<Node>? = nil
    MembarrierRCU.read { section in escaped = pointer.dereference(in: section) }
    return escaped?.object.value ?? 0
}
