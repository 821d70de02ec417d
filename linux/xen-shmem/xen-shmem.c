// SPDX-License-Identifier: GPL-2.0
/*
 * xen-shmem: Xen static shared memory regions as character devices.
 *
 * Xen (4.17+ built with CONFIG_STATIC_SHM) describes every static shared-memory region of
 * a dom0less domU as a child of /reserved-memory in the guest's device tree:
 *
 *	xen-shmem@8000000 {
 *		compatible = "xen,shared-memory-v1";
 *		reg = <0x0 0x8000000 0x0 0x1000>;	(guest-physical address, size)
 *		xen,id = "pingpong";
 *		xen,offset = /bits/ 64 <0>;
 *	};
 *
 * Linux has no driver for these nodes. This module offers each region as
 * /dev/xen-shmem/<xen,id> (misc device "xen-shmem-<xen,id>") whose mmap() maps the
 * region write-back cacheable (Normal memory, the attributes the peer domain uses and
 * that Xen's stage-2 mapping allows), unlike /dev/mem, which maps memory outside the
 * kernel's RAM as Device memory on arm64. Offsets and lengths outside the region are
 * refused (-EINVAL), as are private mappings (-EINVAL: a copy-on-write region would
 * silently stop being shared).
 *
 * sysfs: /sys/class/misc/xen-shmem-<id>/{shm_id,phys_addr,size} (hex for the numbers).
 */
#include <linux/fs.h>
#include <linux/kernel.h>
#include <linux/list.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/of.h>
#include <linux/of_address.h>
#include <linux/slab.h>

#define DRV "xen-shmem"

struct xen_shmem {
	struct list_head list;
	struct miscdevice misc;
	phys_addr_t base;
	resource_size_t size;
	char id[32];		/* xen,shm-id is at most 15 characters on Xen 4.17-4.20 */
	char name[48];		/* "xen-shmem-<id>" */
	char nodename[48];	/* "xen-shmem/<id>" */
};

static LIST_HEAD(regions);

static struct xen_shmem *to_shmem(struct file *f)
{
	/* misc_open() leaves the struct miscdevice in private_data. */
	struct miscdevice *misc = f->private_data;

	return container_of(misc, struct xen_shmem, misc);
}

static int xen_shmem_open(struct inode *inode, struct file *f)
{
	return 0;
}

static int xen_shmem_mmap(struct file *f, struct vm_area_struct *vma)
{
	struct xen_shmem *r = to_shmem(f);
	unsigned long pages = r->size >> PAGE_SHIFT;
	unsigned long len = vma->vm_end - vma->vm_start;
	unsigned long off = vma->vm_pgoff;

	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	if (off >= pages || (len >> PAGE_SHIFT) > pages - off)
		return -EINVAL;
	/*
	 * vm_page_prot is what mmap() derived from PROT_* for a shared mapping: Normal
	 * write-back memory on arm64 (PAGE_SHARED and friends). It is kept as it is; no
	 * pgprot_noncached/writecombine, which is what /dev/mem would choose here. Checked,
	 * so that a kernel that chose otherwise fails loudly instead of mapping Device memory.
	 */
#ifdef CONFIG_ARM64
	if ((pgprot_val(vma->vm_page_prot) & PTE_ATTRINDX_MASK) != PTE_ATTRINDX(MT_NORMAL)) {
		pr_err(DRV ": %s: mmap attributes %#llx are not Normal write-back; refused\n",
		       r->id, (unsigned long long)pgprot_val(vma->vm_page_prot));
		return -EINVAL;
	}
	pr_info_once(DRV ": %s: mapped at user %#lx as Normal write-back (AttrIndx %llu = MT_NORMAL)\n",
		     r->id, vma->vm_start,
		     (unsigned long long)((pgprot_val(vma->vm_page_prot) & PTE_ATTRINDX_MASK) >> 2));
#endif
	return remap_pfn_range(vma, vma->vm_start, PHYS_PFN(r->base) + off, len,
			       vma->vm_page_prot);
}

static loff_t xen_shmem_llseek(struct file *f, loff_t offset, int whence)
{
	return fixed_size_llseek(f, offset, whence, to_shmem(f)->size);
}

static const struct file_operations xen_shmem_fops = {
	.owner = THIS_MODULE,
	.open = xen_shmem_open,
	.mmap = xen_shmem_mmap,
	.llseek = xen_shmem_llseek,
};

static struct xen_shmem *dev_to_shmem(struct device *dev)
{
	struct miscdevice *misc = dev_get_drvdata(dev);

	return container_of(misc, struct xen_shmem, misc);
}

static ssize_t shm_id_show(struct device *dev, struct device_attribute *a, char *buf)
{
	return sysfs_emit(buf, "%s\n", dev_to_shmem(dev)->id);
}
static DEVICE_ATTR_RO(shm_id);

static ssize_t phys_addr_show(struct device *dev, struct device_attribute *a, char *buf)
{
	return sysfs_emit(buf, "0x%llx\n", (unsigned long long)dev_to_shmem(dev)->base);
}
static DEVICE_ATTR_RO(phys_addr);

static ssize_t size_show(struct device *dev, struct device_attribute *a, char *buf)
{
	return sysfs_emit(buf, "0x%llx\n", (unsigned long long)dev_to_shmem(dev)->size);
}
static DEVICE_ATTR_RO(size);

static struct attribute *xen_shmem_attrs[] = {
	&dev_attr_shm_id.attr,
	&dev_attr_phys_addr.attr,
	&dev_attr_size.attr,
	NULL,
};
ATTRIBUTE_GROUPS(xen_shmem);

static int xen_shmem_add(struct device_node *np)
{
	struct xen_shmem *r;
	struct resource res;
	const char *id;
	int err;

	if (of_property_read_string(np, "xen,id", &id)) {
		pr_warn(DRV ": %pOF: no xen,id; skipped\n", np);
		return 0;
	}
	if (of_address_to_resource(np, 0, &res)) {
		pr_warn(DRV ": %pOF: unreadable reg; skipped\n", np);
		return 0;
	}
	if (!PAGE_ALIGNED(res.start) || !PAGE_ALIGNED(resource_size(&res)) ||
	    resource_size(&res) == 0) {
		pr_warn(DRV ": %pOF: %pR is not page aligned; skipped\n", np, &res);
		return 0;
	}
	if (strlen(id) >= sizeof(r->id) || strchr(id, '/')) {
		pr_warn(DRV ": %pOF: unusable xen,id \"%s\"; skipped\n", np, id);
		return 0;
	}

	r = kzalloc(sizeof(*r), GFP_KERNEL);
	if (!r)
		return -ENOMEM;
	r->base = res.start;
	r->size = resource_size(&res);
	strscpy(r->id, id, sizeof(r->id));
	snprintf(r->name, sizeof(r->name), "xen-shmem-%s", id);
	snprintf(r->nodename, sizeof(r->nodename), DRV "/%s", id);
	r->misc.minor = MISC_DYNAMIC_MINOR;
	r->misc.name = r->name;
	r->misc.nodename = r->nodename;
	r->misc.fops = &xen_shmem_fops;
	r->misc.groups = xen_shmem_groups;
	r->misc.mode = 0600;

	err = misc_register(&r->misc);
	if (err) {
		pr_err(DRV ": %pOF: misc_register(%s): %d\n", np, r->name, err);
		kfree(r);
		return err;
	}
	list_add_tail(&r->list, &regions);
	pr_info(DRV ": region \"%s\": %pa+0x%llx (%pOF) as /dev/%s\n", r->id, &r->base,
		(unsigned long long)r->size, np, r->nodename);
	return 0;
}

static void xen_shmem_remove_all(void)
{
	struct xen_shmem *r, *tmp;

	list_for_each_entry_safe(r, tmp, &regions, list) {
		misc_deregister(&r->misc);
		list_del(&r->list);
		kfree(r);
	}
}

static int __init xen_shmem_init(void)
{
	struct device_node *rmem, *np;
	int n = 0, err = 0;

	rmem = of_find_node_by_path("/reserved-memory");
	if (rmem) {
		for_each_available_child_of_node(rmem, np) {
			if (!of_device_is_compatible(np, "xen,shared-memory-v1"))
				continue;
			err = xen_shmem_add(np);
			if (err) {
				of_node_put(np);
				break;
			}
			n++;
		}
		of_node_put(rmem);
	}
	if (err) {
		xen_shmem_remove_all();
		return err;
	}
	pr_info(DRV ": %d region(s)\n", n);
	/* Loaded with no region is fine: the init program reports what it expected. */
	return 0;
}

static void __exit xen_shmem_exit(void)
{
	xen_shmem_remove_all();
}

module_init(xen_shmem_init);
module_exit(xen_shmem_exit);

MODULE_DESCRIPTION("Xen static shared memory (xen,shared-memory-v1) as mmap()able devices");
MODULE_AUTHOR("staticbus");
MODULE_LICENSE("GPL");
